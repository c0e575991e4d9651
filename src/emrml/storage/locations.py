"""Storage by URI: list, read and atomically write the files a location names.

A location is a local path (absolute, relative to the working directory, or starting with ``~``), a
``file:///abs/path`` URI, or ``s3://bucket/key``. A location naming a directory, or ending in ``/``, means
every file below it (Amazon ML's S3 prefix). Each scheme is served by a ``Backend``; the module functions
pick one and turn its ``OSError`` into ``InvalidInputException`` naming the location
(``AccessDeniedException`` when the store refused access).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, BinaryIO

from emrml.core.surrogates import is_text, shown_bytes
from emrml.errors import AmazonMLError, DataError, InvalidInputException
from emrml.storage import s3_names
from emrml.storage.backend import (
    BUFFER_BYTES,
    SCHEMA_SUFFIX,
    Backend,
    Commit,
    FileRef,
    Folder,
    commit_now,
    storage_error,
)
from emrml.storage.local import LocalBackend, local_path
from emrml.storage.named_reads import NamedReader
from emrml.storage.s3 import S3Settings, S3Store, split
from emrml.storage.s3_backend import S3Backend

if TYPE_CHECKING:
    from emrml.config import Settings

#: A schema (or recipe) may hold 131,071 characters; UTF-8 needs up to 4 bytes for each.
TEXT_MAX_BYTES = 131071 * 4

#: ``open_files`` reads up to this many S3 objects ahead of the one being read, at once, each read whole
#: when it holds at most ``READ_AHEAD_OBJECT_BYTES``; a larger next object has its GET sent (its first bytes
#: wait on the connection until read): S3 answers a request in tens of milliseconds, so a datasource of many
#: objects read one after the other spent its time waiting. Memory: at most their product (8 MiB) beyond
#: the object being read.
READ_AHEAD_OBJECTS = 8
READ_AHEAD_OBJECT_BYTES = 1 << 20

#: What a message about a datasource's data names it by: its member's path in the request that gave it, as
#: the request's own validation names it (InferDataSchema, whose member is top-level, says so itself).
DATA_LOCATION = "DataSpec.DataLocationS3"

_S3_URI = re.compile(r"s3://([^/]+)(/.*)?", re.DOTALL)  # a line break in a key is told as such
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def check_syntax(location: str) -> None:
    """InvalidInputException unless ``location`` is a local path, a ``file://`` URI of this machine or an
    ``s3://bucket[/key]`` URI of a bucket and key named as S3 names them (``storage.s3_names``); nothing
    is read."""
    if _backend(location) is _LOCAL:
        local_path(location)
        return
    s3_names.check_location(location)


def list_files(location: str, *, what: str = DATA_LOCATION) -> list[FileRef]:
    """The data files ``location`` names, sorted by key.

    A file gives itself. A directory (or a location ending in ``/``) gives every regular file below it,
    recursively, except hidden ones (a name, or a directory below the location, starting with ``.``) and
    ``*.schema`` files. ``what`` names the field in error messages. Raises ``InvalidInputException`` when
    the location does not exist, cannot be read, or holds no data files (``AccessDeniedException`` when the
    store refuses access).
    """
    backend = _backend(location)
    try:
        if not backend.exists(location):
            raise InvalidInputException(f"{what} '{location}' does not exist")
        files = backend.list(location)
    except OSError as exc:
        raise _os_error(exc, what, location) from exc
    if not files:
        raise InvalidInputException(f"{what} '{location}' contains no data files")
    for file in files:
        _check_listed_name(file, what, location, s3=backend is _S3)
    return files


def _check_listed_name(file: FileRef, what: str, location: str, *, s3: bool) -> None:
    """A local file whose name is not UTF-8 is listed with its bytes as lone surrogates, which no message,
    progress note or manifest can hold: refused naming the file, rather than failing the job later with an
    internal error. (S3 keys are always UTF-8.) An S3 object whose key holds a control character, which no
    location may name (``s3_names.key_problem``), is refused as well: its results would be written under
    such a key, and a line break in its name split the lines of logs and manifests."""
    if not is_text(file.uri):
        raise InvalidInputException(
            f"{what} '{location}' holds the file '{shown_bytes(file.uri)}', whose name is not UTF-8: "
            "rename it"
        )
    control = s3_names.control_character_at(file.key) if s3 else None
    if control is not None:
        raise InvalidInputException(
            f"{what} '{location}' holds the object '{s3_names.shown(file.uri)}', whose key holds the control "
            f"character U+{ord(file.key[control]):04X}: copy it to a key without one"
        )


def check_holds_files(location: str, *, what: str = DATA_LOCATION) -> None:
    """InvalidInputException when ``location`` is a folder or S3 prefix that holds no data file (none at
    all, or hidden files and ``.schema`` files only), which a datasource could only fail on: told when it
    is asked for, not by a FAILED datasource. A location that does not exist, and one the store does not
    list (its error), pass: the job that reads it reports them as it does any file's."""
    backend = _backend(location)
    try:
        empty = backend.holds_no_file(location)
    except OSError:
        return
    if empty:
        kind = "S3 prefix" if backend is _S3 else "folder"
        raise InvalidInputException(
            f"{what} '{location}' holds no file: the {kind} is empty, or holds only hidden files and schema "
            "(.schema) files; a datasource reads at least one data file"
        )


def open_binary(location: str, *, what: str = "location", start: int = 0) -> BinaryIO:
    """The raw (still compressed, if it is) bytes of the file ``location``, buffered in 1 MiB blocks, from
    byte ``start`` (for an S3 object, the first request asks for the bytes from there)."""
    try:
        backend = _backend(location)
        if backend is _S3:
            return _named_reads(_S3.store.open(location, BUFFER_BYTES, start=start), what, location)
        stream = backend.open(location)
        if start:
            stream.seek(start)
        return stream
    except OSError as exc:
        raise _os_error(exc, what, location) from exc
    except InvalidInputException as exc:
        raise _named(exc, what, location) from exc.__cause__


def open_files(files: list[FileRef], *, what: str = DATA_LOCATION) -> Iterator[BinaryIO]:
    """The raw streams of ``files`` (as ``open_binary``), in their order, each opened when the one before
    it is asked for; the caller closes each. The next small S3 objects are read meanwhile
    (``READ_AHEAD_OBJECTS``), and the next object opened whatever its size, each pinned to the version its
    listing found; an object that cannot be read raises when its turn comes, as ``open_binary`` would.
    Stopping early drops what was read ahead."""
    ahead: dict[int, Future[BinaryIO]] = {}
    with ThreadPoolExecutor(READ_AHEAD_OBJECTS, thread_name_prefix="emrml-read-ahead") as pool:
        try:
            for index, file in enumerate(files):
                for later in range(index, min(index + READ_AHEAD_OBJECTS, len(files))):
                    if later not in ahead and _read_ahead(files[later], later - index):
                        ahead[later] = pool.submit(_open_listed, files[later], what, READ_AHEAD_OBJECT_BYTES)
                opening = ahead.pop(index, None)
                yield opening.result() if opening is not None else _open_listed(file, what, 0)
        finally:
            for opening in ahead.values():
                opening.cancel()
            for opening in ahead.values():
                if not opening.cancelled() and opening.exception() is None:
                    opening.result().close()


def _read_ahead(file: FileRef, distance: int) -> bool:
    return file.uri.startswith("s3://") and (file.size <= READ_AHEAD_OBJECT_BYTES or distance <= 1)


def _open_listed(file: FileRef, what: str, whole_up_to: int) -> BinaryIO:
    """``open_binary`` of a listed file; an S3 object is read as the version listed (no HeadObject)."""
    if not file.uri.startswith("s3://"):
        return open_binary(file.uri, what=what)
    _backend(file.uri)
    # The quotes S3 puts around an ETag, which some stores leave out of listings: ``IfMatch`` wants them.
    etag = f'"{file.etag.strip(chr(34))}"' if file.etag else ""
    # A client-side encrypted object is its 16-byte tag longer than its data (``FileRef.size``).
    whole = whole_up_to + 16 if whole_up_to else 0
    try:
        stream = _S3.store.open(file.uri, BUFFER_BYTES, etag=etag, whole_up_to=whole)
    except OSError as exc:
        raise _os_error(exc, what, file.uri) from exc
    except InvalidInputException as exc:
        raise _named(exc, what, file.uri) from exc.__cause__
    return _named_reads(stream, what, file.uri)


def _named_reads(stream: BinaryIO, what: str, location: str) -> BinaryIO:
    """``stream`` (an S3 object's, as ``S3Store.open`` buffers it), its read errors said of ``what`` as
    those of opening it are (``named_reads``)."""
    if what == "location":  # the default, which names no member: the object's URI says it all
        return stream
    raw = stream.detach()  # type: ignore[attr-defined]  # nothing is buffered yet: nothing was read
    return NamedReader(raw, BUFFER_BYTES, what, location)  # type: ignore[return-value]


#: Bytes of plaintext an ``authenticated_first`` stream keeps in memory; beyond, in a temporary file.
SPOOL_MEMORY_BYTES = 8 << 20


def authenticated_first(stream: BinaryIO, location: str, *, spool_dir: str, max_bytes: int) -> BinaryIO:
    """``stream`` (from ``open_binary(location)``), or its bytes checked whole first where it hands out
    bytes it authenticates only at its end: a client-side encrypted object, whose AES-GCM tag follows its
    body. Its plaintext then goes to a temporary file in ``spool_dir`` (memory up to a few MiB), which is
    returned rewound once the tag is checked: who sends it on (a download) never sends a byte of an altered
    object, whose check raises ``DecryptionError`` before. ``InvalidInputException`` for an encrypted
    object of more than ``max_bytes``. Takes ownership of ``stream``."""
    if not location.startswith("s3://") or _S3.store.settings.cse is None:
        return stream  # no key: an encrypted object is refused when opened
    from emrml.storage.cse import DecryptingReader

    reader = getattr(stream, "raw", None)
    if not isinstance(reader, DecryptingReader):
        return stream
    with stream:
        size = reader.remaining
        if size > max_bytes:
            raise InvalidInputException(
                f"'{location}' is encrypted on the client side and {size:,} bytes long: it is checked whole "
                f"before any of it is sent, up to {max_bytes:,} bytes; read it with an S3 encryption client"
            )
        os.makedirs(spool_dir, exist_ok=True)
        spool = tempfile.SpooledTemporaryFile(SPOOL_MEMORY_BYTES, dir=spool_dir)  # noqa: SIM115 (handed out)
        try:
            shutil.copyfileobj(stream, spool, BUFFER_BYTES)
        except BaseException:
            spool.close()
            raise
    spool.seek(0)
    return spool  # type: ignore[return-value]


def read_text(location: str, max_bytes: int = TEXT_MAX_BYTES, *, what: str = "location") -> str:
    """The UTF-8 text of the file ``location`` (a leading byte order mark is dropped).

    Raises ``InvalidInputException`` when it is missing, larger than ``max_bytes``, or not UTF-8.
    """
    with open_binary(location, what=what) as stream:
        try:
            data = stream.read(max_bytes + 1)
        except OSError as exc:
            raise _os_error(exc, what, location) from exc
    if len(data) > max_bytes:
        raise InvalidInputException(f"{what} '{location}' is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputException(
            f"{what} '{location}' is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None


def read_named_text(file: str | Path, *, what: str) -> str:
    """The UTF-8 text of a schema, recipe or pipeline file a caller names (``what``: the option or
    argument): a URI (``s3://``, ``file://``) read as ``read_text`` reads data; a local path, ``~`` expanded,
    read up to ``TEXT_MAX_BYTES`` too (``--schema /dev/zero`` read until memory ran out)."""
    if isinstance(file, str) and "://" in file:
        return read_text(file, what=what)
    try:
        with Path(file).expanduser().open("rb") as stream:
            data = stream.read(TEXT_MAX_BYTES + 1)
        if len(data) > TEXT_MAX_BYTES:
            raise InvalidInputException(f"{what} {file}: larger than {TEXT_MAX_BYTES} bytes")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputException(f"{what} {file}: cannot read the file ({exc})") from None


def exists(location: str, *, what: str = "location") -> bool:
    """Whether ``location`` names an existing file, or directory when it ends in ``/`` or is one."""
    try:
        return _backend(location).exists(location)
    except OSError as exc:
        raise _os_error(exc, what, location) from exc


def check_unchanged(files: list[FileRef]) -> None:
    """``DataError`` naming the first file that is no longer what its listing found: a local file whose
    size or modification time changed (truncated, appended to or rewritten), an S3 object whose ETag
    changed (replaced) or that is gone, while a job read it, so the records read are not the file's. One
    read of an S3 object is of one version, but a job reads an object in several (byte ranges read apart,
    training passes), which could otherwise have read pieces of two versions."""
    _check_objects_unchanged([file for file in files if file.etag])
    for file in files:
        if not file.modified_ns:
            continue
        try:
            info = os.stat(local_path(file.uri))
        except FileNotFoundError:
            raise DataError(f"file {file.uri} was removed while it was being read") from None
        except OSError:
            continue  # unreadable now: whatever reads it next says so
        if (info.st_size, info.st_mtime_ns) != (file.size, file.modified_ns):
            now = f"{info.st_size:,} bytes now" if info.st_size != file.size else "the same size, rewritten"
            raise DataError(
                f"file {file.uri} changed while it was being read ({file.size:,} bytes when the job started, "
                f"{now}): its records cannot be counted on; run the job again once the file is complete"
            )


def _check_objects_unchanged(files: list[FileRef]) -> None:
    by_bucket: dict[str, list[FileRef]] = {}
    for file in files:
        by_bucket.setdefault(split(file.uri)[0], []).append(file)
    for bucket, listed in by_bucket.items():
        try:
            now = _S3.store.current_etags(bucket, [file.key for file in listed])
        except OSError as exc:
            raise _os_error(exc, "location", listed[0].uri) from exc
        for file in listed:
            if file.key not in now:
                raise DataError(f"object {file.uri} was removed while it was being read")
            # Quotes aside: a listing and a HeadObject may spell one ETag differently on some stores.
            if now[file.key].strip('"') != file.etag.strip('"'):
                raise DataError(
                    f"object {file.uri} was replaced while it was being read (its ETag was {file.etag} when "
                    f"the job started, {now[file.key]} now): its records cannot be counted on; run the job "
                    "again once the object is complete"
                )


def schema_candidates(data_location: str) -> list[str]:
    """Where the schema of ``data_location`` may be, told from its spelling alone (no I/O): ``<file>.schema``
    beside a file, ``<prefix>/.schema`` inside a directory or prefix (spec 5.1). One location when the
    spelling says which (a trailing ``/``, an S3 bucket alone: folders); else both, the file's first."""
    if data_location.endswith("/"):
        return [data_location + SCHEMA_SUFFIX]
    inside = f"{data_location}/{SCHEMA_SUFFIX}"
    if data_location.startswith("s3://") and "/" not in data_location[len("s3://") :]:
        return [inside]
    return [data_location + SCHEMA_SUFFIX, inside]


def schema_location_for(data_location: str) -> str:
    """Where the console keeps the schema of ``data_location``: of its ``schema_candidates``, the one of
    what it names (the store is asked whether a file or a folder when the spelling does not say)."""
    candidates = schema_candidates(data_location)
    if len(candidates) == 1:
        return candidates[0]
    backend = _backend(data_location)
    try:
        folder = backend.is_folder(data_location)
    except OSError as exc:
        raise _os_error(exc, DATA_LOCATION, data_location) from exc
    return candidates[1 if folder else 0]


@contextmanager
def atomic_write(location: str, commit: Commit = commit_now) -> Iterator[BinaryIO]:
    """Write the file ``location`` all at once: readers see the old file or the complete new one.

    The bytes go to a hidden temporary file beside the target (so listings skip it), which is synced and
    renamed over the target when the block exits normally, and removed when it raises. Missing parent
    directories are created. The step that makes the file appear (the rename; for S3, the one request that
    completes the upload) runs through ``commit``, which may refuse it by raising (nothing then appears).
    """
    with _backend(location).atomic_write(location, commit) as stream:
        yield stream


def publish_file(path: str, location: str, commit: Commit = commit_now) -> None:
    """Move the local file ``path`` to ``location`` atomically: a rename when both are on one local file
    system, else a copy (a multipart upload for S3) after which ``path`` is removed. The step that makes
    it appear runs through ``commit`` (``atomic_write``)."""
    if not location.startswith("s3://") and _LOCAL.move_in(path, location, commit):
        return
    with open(path, "rb") as source, atomic_write(location, commit) as out:
        shutil.copyfileobj(source, out, BUFFER_BYTES)
    os.unlink(path)


def copy(source: str, target: str) -> None:
    """Copy the file ``source`` to ``target`` (any schemes), atomically at the target.

    Bytes are streamed through this process, so an object encrypted on the client is decrypted with the
    configured keys and written encrypted with the active one; between two S3 locations with no client-side
    key configured, S3 copies server-side.
    """
    if source.startswith("s3://") and target.startswith("s3://") and _S3.store.settings.cse is None:
        _backend(source)
        _backend(target)
        try:
            _S3.store.copy(source, target)
        except OSError as exc:
            raise storage_error(f"cannot copy '{source}' to '{target}'", exc) from exc
        return
    with open_binary(source, what="source") as stream, atomic_write(target) as out:
        shutil.copyfileobj(stream, out, BUFFER_BYTES)


def list_folder(location: str, token: str | None = None, limit: int = 1000) -> Folder:
    """The sub-folders (locations ending in ``/``) and files directly inside ``location``, a page at a time,
    in name order; hidden entries included (a browser shows them)."""
    try:
        return _backend(location).list_folder(location, token, limit)
    except OSError as exc:
        raise _os_error(exc, "location", location) from exc


def make_folder(location: str) -> None:
    """Create the folder ``location`` (ending in ``/``): a directory, or for S3 the empty ``prefix/`` object
    the S3 console makes for a folder (S3 has none; listings show the prefix), with the SSE settings."""
    backend = _backend(location)
    try:
        if backend is _S3:
            bucket, key = split(location)
            _S3.store.call("put_object", bucket, key, Body=b"", **_S3.store.settings.write_arguments())
        else:
            _LOCAL.make_folder(location)
    except OSError as exc:
        raise storage_error(f"cannot create folder '{location}'", exc) from exc


def delete(location: str) -> None:
    """Remove the file ``location``; a missing one is not an error."""
    backend = _backend(location)
    try:
        backend.delete(location)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise storage_error(f"cannot delete '{location}'", exc) from exc


def remove_temporaries(location: str) -> None:
    """Remove the hidden temporary files that writes of ``location`` whose process was killed left beside
    it (``atomic_write``, and a model's file: ``.<name>.<random>.tmp``); a write under way then fails.
    Nothing for S3, where an unfinished upload makes no object. For a job about to write the file again,
    or whose results are discarded."""
    directory = local_directory(location)
    if directory is None:
        return
    folder, name = os.path.split(directory)
    with suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.startswith(f".{name}.") and entry.name.endswith(".tmp") and entry.is_file():
                with suppress(FileNotFoundError):
                    os.unlink(entry.path)


def local_directory(location: str) -> str | None:
    """The local path of a location on this machine's file systems; None for remote stores."""
    return None if isinstance(_backend(location), S3Backend) else local_path(location)


_LOCAL = LocalBackend()
_S3 = S3Backend()


#: The settings storage is made from: what a process that did not load the settings (a Spark executor)
#: needs to read and write the same locations.
STORAGE_SETTINGS = (
    "s3_endpoint_url", "s3_region", "s3_sse", "s3_sse_kms_key_id", "s3_part_bytes", "s3_cse_key",
    "s3_cse_old_keys", "s3_cse_allow_plaintext", "kms_endpoint_url",
)  # fmt: skip


def configure(settings: Settings) -> None:
    """Take the storage settings (S3 endpoint, encryption) from ``settings``, for this process and the
    processes it forks."""
    configure_storage_settings({name: getattr(settings, name) for name in STORAGE_SETTINGS})


def storage_settings() -> dict[str, Any]:
    """This process's storage settings, for ``configure_storage_settings`` in another process (the
    values only: key files are named, not read; each process reads them itself)."""
    return dict(_S3.settings)


def configure_storage_settings(values: dict[str, Any]) -> None:
    """Use the storage settings another process handed over (``storage_settings``); cheap when they are
    the ones in use already."""
    if values == _S3.settings:
        return
    import dataclasses

    from emrml.config import Settings

    defaults = {f.name: f.default for f in dataclasses.fields(Settings) if f.name in STORAGE_SETTINGS}
    settings = SimpleNamespace(**{**defaults, **values})
    _S3.store = S3Store(S3Settings.from_settings(settings))  # type: ignore[arg-type]
    _S3.settings = dict(values)


def _backend(location: str) -> Backend:
    if not location:
        raise InvalidInputException("a location must not be empty")
    if location.startswith("s3://"):
        if not _S3_URI.fullmatch(location):
            raise InvalidInputException(f"'{location}' is not a valid S3 location (expected s3://bucket/key)")
        if s3_names.control_character_at(location) is not None:
            # Whatever the door (a listing, a read, a write): neither a bucket nor a key holds one.
            s3_names.check_location(location)
        return _S3
    scheme = _SCHEME.match(location)
    if scheme and scheme.group(1) != "file":
        raise InvalidInputException(
            f"'{location}': unsupported scheme '{scheme.group(1)}' (use a local path, file:// or s3://)"
        )
    return _LOCAL


def _named(exc: InvalidInputException, what: str, location: str) -> InvalidInputException:
    """A client-side encryption error of opening ``location`` (no key, the wrong key, an object that is not
    encrypted) said of the request member ``what`` that gave it, as a missing file is; others as they are."""
    from emrml.storage.cse import DecryptionError  # imported once an error comes: it loads cryptography

    if what == "location":  # the default, which names no member: the object's URI says it all
        return exc
    return exc.naming(what, location) if isinstance(exc, DecryptionError) else exc


def _os_error(exc: OSError, what: str, location: str) -> AmazonMLError:
    if isinstance(exc, FileNotFoundError):
        return InvalidInputException(f"{what} '{location}' does not exist")
    if isinstance(exc, IsADirectoryError):
        return InvalidInputException(f"{what} '{location}' is a directory, not a file")
    if isinstance(exc, NotADirectoryError):
        return InvalidInputException(f"{what} '{location}' is not a directory")
    return storage_error(f"{what} '{location}' cannot be read", exc)
