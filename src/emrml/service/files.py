"""The storage browser's operations: list, download, upload, create a folder, delete, copy and move.

Each runs as its caller through the two doors every location passes (``confinement.check_location``):
the caller's groups must grant ``storage:Read`` (listing, downloading, the source of a copy) or
``storage:Write`` (the rest) on the location, and local locations must lie in the data roots and outside
the home's own files. Reading and writing go through ``storage.locations``, so S3 and client-side
encryption work as everywhere else: an upload is written encrypted when CSE is configured, a download is
decrypted. Uploads and copies appear whole or not at all (``atomic_write``). Local files are checked a
second time as they are used, through the descriptors opened to use them (``checked_as_opened``).
"""

from __future__ import annotations

import os
import shutil
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, BinaryIO

from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.service.confinement import check_location, checked_as_opened, open_for_server
from emrml.service.operations import running_as
from emrml.storage import locations

if TYPE_CHECKING:
    from emrml.service.app import EmrML

#: Entries per page of a folder listing.
PAGE_SIZE = 100
#: The largest client-side encrypted object downloaded: its plaintext is checked whole, into a temporary
#: file, before any of it is sent (``open_file``).
DOWNLOAD_CHECKED_MAX_BYTES = 4 << 30
_BLOCK_BYTES = 1024 * 1024
_FORBIDDEN_NAME_CHARACTERS = set('/\\\x00"')
#: A new name's bytes in UTF-8 at most: the file systems' 255 a name, less the 22 the hidden temporary
#: name it is written under adds (``.<name>.<16 hex digits>.tmp``, storage/local.py). Bytes, not
#: characters: 86 Chinese characters are 258 bytes, which no file system takes.
NAME_MAX_BYTES = 255 - len("..0123456789abcdef.tmp")


def acting(caller: str | None) -> AbstractContextManager[None]:
    """Run as ``caller`` through the server: what ``EmrML.call(..., caller, remote=True)`` sets."""
    return running_as(caller, remote=True)


def folder_location(location: str) -> str:
    """``location`` as a folder (ending in ``/``); refuses what names no folder."""
    location = location.strip()
    if "\x00" in location:
        # Said as every other field says it, rather than quoted back with the character in it.
        raise InvalidInputException("location holds a NUL character (U+0000), which no text may hold")
    if not location or not (location.startswith(("s3://", "/", "file://"))):
        raise InvalidInputException(f"location '{location}' must be an absolute path or an s3:// URI")
    return location if location.endswith("/") else location + "/"


def check_name(name: str) -> str:
    """A new file's or folder's name: one path part, not ``.`` or ``..``, at most ``NAME_MAX_BYTES``."""
    if not name or name in (".", "..") or set(name) & _FORBIDDEN_NAME_CHARACTERS:
        raise InvalidInputException(
            f"name {name!r} must be one path part without '/', '\\', '\"' or NUL, and not '.' or '..'"
        )
    return _short_enough(name, "name")


def _short_enough(name: str, member: str) -> str:
    """``name`` if it has at most ``NAME_MAX_BYTES`` bytes of UTF-8; else refused, naming ``member``."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > NAME_MAX_BYTES:
        raise InvalidInputException(
            f"{member} {name!r} is {size} bytes in UTF-8: a name has at most {NAME_MAX_BYTES} bytes (a "
            "character outside ASCII takes 2 to 4)"
        )
    return name


def list_folder(app: EmrML, caller: str | None, location: str, token: str | None = None) -> locations.Folder:
    """One page of the folder: its sub-folders and files."""
    folder = folder_location(location)
    with acting(caller):
        check_location(app, folder, member="location")
    with checked_as_opened(app, remote=True):
        return locations.list_folder(folder, token, PAGE_SIZE)


def open_file(app: EmrML, caller: str | None, location: str) -> BinaryIO:
    """The file's bytes (decrypted), checked again through the opened descriptor for local files. A
    download: an object encrypted on the client side is decrypted and its tag checked before any byte is
    handed out (``for_download``), so an altered object is refused, not sent cut short."""
    with acting(caller):
        return for_download(app, open_for_server(app, location, member="location"), location)


def for_download(app: EmrML, stream: BinaryIO, location: str) -> BinaryIO:
    """``stream`` as a download may send it: authenticated whole first (``locations.authenticated_first``)."""
    spool = str(app.settings.scratch_dir)
    return locations.authenticated_first(
        stream, location, spool_dir=spool, max_bytes=DOWNLOAD_CHECKED_MAX_BYTES
    )


def may(app: EmrML, caller: str | None, location: str, *, write: bool = False, below: bool = False) -> bool:
    """Whether ``caller`` passes the first check of reading (``open_file``) or, ``write``, changing
    (upload, new folder, delete) ``location``: grants and data roots, nothing opened. What the console
    asks before offering a download or a change, so that a refusal is not the first the user learns of it.
    ``below``: as a folder whose every file is used (an output folder: ``check_location``'s)."""
    try:
        with acting(caller):
            check_location(app, location, member="location", write=write, below=below)
    except (AccessDeniedException, InvalidInputException):
        return False
    return True


def server_may_write(location: str) -> bool:
    """Whether this process may create files in the local folder ``location`` (or, not made yet, in its
    nearest existing parent) as the disk says (``os.access``): a read-only data root (mounted read-only,
    or not the server's own) refuses every change whatever the grants. S3 locations say so only when
    written to: true."""
    if location.startswith("s3://"):
        return True
    path = os.path.abspath(location.removeprefix("file://"))
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def upload(
    app: EmrML, caller: str | None, folder: str, name: str, source: BinaryIO, *, replace: bool = False
) -> str:
    """Write ``source`` as ``folder/name`` (whole or not at all); returns the new file's location. A file
    already there is replaced only when ``replace`` says so."""
    target = folder_location(folder) + check_name(name)
    with acting(caller):
        check_location(app, target, member="location", write=True)
    _check_new(target, replace)
    with checked_as_opened(app, remote=True), locations.atomic_write(target) as out:
        shutil.copyfileobj(source, out, _BLOCK_BYTES)
    return target


def make_folder(app: EmrML, caller: str | None, parent: str, name: str) -> str:
    """Create ``parent/name/``: a directory, or for S3 an empty ``name/`` object (S3 has no folders, the
    console shows a prefix as one)."""
    target = folder_location(parent) + check_name(name) + "/"
    with acting(caller):
        check_location(app, target, member="location", write=True)
    with checked_as_opened(app, remote=True):
        locations.make_folder(target)
    return target


def delete(app: EmrML, caller: str | None, location: str) -> None:
    """Delete one file (folders are not deleted: empty them first)."""
    if location.endswith("/"):
        raise InvalidInputException(f"'{location}' is a folder: delete its files one by one")
    with acting(caller):
        check_location(app, location, member="location", write=True)
    with checked_as_opened(app, remote=True):
        locations.delete(location)


def copy(
    app: EmrML, caller: str | None, source: str, target: str, *, move: bool = False, replace: bool = False
) -> None:
    """Copy (``move``: then delete) one file between any two locations, local or S3; a file already at
    ``target`` is replaced only when ``replace`` says so."""
    if source.endswith("/") or target.endswith("/"):
        raise InvalidInputException("copy and move take one file and the new file's full location")
    if _same_file(source, target):
        # A move would write the file onto itself and then delete it.
        raise InvalidInputException(f"'{target}' is the same file as '{source}': give another location")
    _short_enough(target.rsplit("/", 1)[-1], "target's file name")
    with acting(caller):
        check_location(app, target, member="target", write=True)
        if move:
            check_location(app, source, member="source", write=True)
        _check_new(target, replace)
        # Opened as downloads are: a local source is checked again through its descriptor.
        stream = open_for_server(app, source, member="source")
    with checked_as_opened(app, remote=True):
        with stream, locations.atomic_write(target) as out:
            shutil.copyfileobj(stream, out, _BLOCK_BYTES)
        if move:
            locations.delete(source)


def _check_new(target: str, replace: bool) -> None:
    """Refuse to write over what ``target`` names unless asked to: a file (a datasource's data, a batch
    prediction's results) silently replaced by an upload or a copy of the same name would be lost."""
    if replace:
        return
    if locations.exists(target, what="target"):  # a file, or a folder of that name
        raise InvalidInputException(
            f"'{target}' already exists: give another location, or delete that file first"
        )


def _same_file(source: str, target: str) -> bool:
    """Whether two locations name one file (``file://``, ``./`` and links resolved for local files)."""
    if source.startswith("s3://") or target.startswith("s3://"):
        return source == target
    first, second = locations.local_path(source), locations.local_path(target)
    if first == second:
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # the target does not exist yet
        return False
