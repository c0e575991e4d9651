"""Storage by URI: list, read and atomically write the files a location names.

A location is a local path (absolute, relative to the working directory, or starting with ``~``), a
``file:///abs/path`` URI, or ``s3://bucket/key``. A location naming a directory, or ending in ``/``, means
every file below it (Amazon ML's S3 prefix). Each scheme is served by a ``Backend``; the module functions
pick one and turn its ``OSError`` into ``InvalidInputException`` naming the location.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import unquote

from emrml.errors import InvalidInputException
from emrml.storage.s3 import S3Settings, S3Store, split

if TYPE_CHECKING:
    from emrml.config import Settings

#: Buffer size of the streams ``open_binary`` and ``atomic_write`` return.
BUFFER_BYTES = 1 << 20
#: A schema (or recipe) may hold 131,071 characters; UTF-8 needs up to 4 bytes for each.
TEXT_MAX_BYTES = 131071 * 4
#: The console puts a data file's schema beside it as ``<data>.schema``.
SCHEMA_SUFFIX = ".schema"

_S3_URI = re.compile(r"s3://([^/]+)(/.*)?")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class FileRef:
    """One file of a location.

    ``uri`` names it as the user would (for local files, the absolute path); ``key`` is its object key:
    ``k`` for ``s3://bucket/k``, the absolute path without its leading ``/`` for local files. ``name`` is
    its path relative to the location that listed it ("" when the location is the file itself): what
    random splits hash, so data split in one folder splits the same in another. ``size`` is in bytes.
    """

    uri: str
    key: str
    size: int
    name: str = ""


class Backend(Protocol):
    """Access to one kind of location.

    Reading methods raise ``FileNotFoundError`` for a missing file and another ``OSError`` for one that
    cannot be read; ``atomic_write`` raises ``InvalidInputException`` when the file cannot be written, and
    lets the exceptions of the writing block through unchanged.
    """

    def list(self, location: str) -> list[FileRef]:
        """The data files of ``location``: itself if it is a file, else every visible file below it."""
        ...

    def open(self, location: str) -> BinaryIO:
        """The file's raw bytes as a buffered stream."""
        ...

    def exists(self, location: str) -> bool: ...

    def delete(self, location: str) -> None: ...

    def is_folder(self, location: str) -> bool:
        """Whether ``location`` (not ending in ``/``) is a directory or S3 prefix rather than a file."""
        ...

    def list_folder(self, location: str, token: str | None, limit: int) -> Folder: ...

    def atomic_write(self, location: str) -> AbstractContextManager[BinaryIO]:
        """A writable stream whose bytes appear at ``location`` only when the block exits without error."""
        ...


def check_syntax(location: str) -> None:
    """InvalidInputException unless ``location`` is a local path, a ``file://`` URI of this machine or an
    ``s3://bucket[/key]`` URI; nothing is read."""
    if _backend(location) is _LOCAL:
        local_path(location)


def list_files(location: str, *, what: str = "DataLocationS3") -> list[FileRef]:
    """The data files ``location`` names, sorted by key.

    A file gives itself. A directory (or a location ending in ``/``) gives every regular file below it,
    recursively, except hidden ones (a name, or a directory below the location, starting with ``.``) and
    ``*.schema`` files. ``what`` names the field in error messages. Raises ``InvalidInputException`` when
    the location does not exist, cannot be read, or holds no data files.
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
    return files


def open_binary(location: str, *, what: str = "location") -> BinaryIO:
    """The raw (still compressed, if it is) bytes of the file ``location``, buffered in 1 MiB blocks."""
    try:
        return _backend(location).open(location)
    except OSError as exc:
        raise _os_error(exc, what, location) from exc


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


def exists(location: str, *, what: str = "location") -> bool:
    """Whether ``location`` names an existing file, or directory when it ends in ``/`` or is one."""
    try:
        return _backend(location).exists(location)
    except OSError as exc:
        raise _os_error(exc, what, location) from exc


def schema_location_for(data_location: str) -> str:
    """Where the console keeps the schema of ``data_location``.

    ``<file>.schema`` beside a file; ``<prefix>/.schema`` inside a directory or prefix (spec 5.1).
    """
    if data_location.endswith("/"):
        return data_location + SCHEMA_SUFFIX
    backend = _backend(data_location)
    try:
        folder = backend.is_folder(data_location)
    except OSError as exc:
        raise _os_error(exc, "DataLocationS3", data_location) from exc
    return data_location + ("/" if folder else "") + SCHEMA_SUFFIX


@contextmanager
def atomic_write(location: str) -> Iterator[BinaryIO]:
    """Write the file ``location`` all at once: readers see the old file or the complete new one.

    The bytes go to a hidden temporary file beside the target (so listings skip it), which is synced and
    renamed over the target when the block exits normally, and removed when it raises. Missing parent
    directories are created.
    """
    with _backend(location).atomic_write(location) as stream:
        yield stream


def publish_file(path: str, location: str) -> None:
    """Move the local file ``path`` to ``location`` atomically: a rename when both are on one local file
    system, else a copy (a multipart upload for S3) after which ``path`` is removed."""
    if not location.startswith("s3://"):
        target = local_path(location)
        directory, name = os.path.split(target)
        try:
            os.makedirs(directory, exist_ok=True)
            folder = _open_folder(directory, name, target)
            try:
                os.replace(path, name, dst_dir_fd=folder)
            finally:
                os.close(folder)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise _write_error(location, exc) from exc
    with open(path, "rb") as source, atomic_write(location) as out:
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
            raise InvalidInputException(
                f"cannot copy '{source}' to '{target}': {exc.strerror or exc}"
            ) from exc
        return
    with open_binary(source, what="source") as stream, atomic_write(target) as out:
        shutil.copyfileobj(stream, out, BUFFER_BYTES)


@dataclass(frozen=True)
class Folder:
    """One page of a folder (a directory, or an S3 prefix up to the next ``/``), for browsing."""

    folders: list[str]
    files: list[FileRef]
    #: Pass to ``list_folder`` for the next page; None on the last page.
    next_token: str | None


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
            target = local_path(location)
            directory, name = os.path.split(target)
            os.makedirs(directory, exist_ok=True)
            folder = _open_folder(directory, name, target)
            try:
                os.mkdir(name, dir_fd=folder)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(name, dir_fd=folder).st_mode):
                    raise
            finally:
                os.close(folder)
    except OSError as exc:
        raise InvalidInputException(f"cannot create folder '{location}': {exc.strerror or exc}") from exc


def delete(location: str) -> None:
    """Remove the file ``location``; a missing one is not an error."""
    backend = _backend(location)
    try:
        backend.delete(location)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InvalidInputException(f"cannot delete '{location}': {exc.strerror or exc}") from exc


def local_directory(location: str) -> str | None:
    """The local path of a location on this machine's file systems; None for remote stores."""
    return None if isinstance(_backend(location), S3Backend) else local_path(location)


#: A check every local file listed or opened must pass, or None (``guarded``). Process-wide, not a context
#: variable: a job's reader threads and forked pool workers must see it too; a job has its process to itself.
_GUARD: Callable[[str, str], None] | None = None


@contextmanager
def guarded(check: Callable[[str, str], None]) -> Iterator[None]:
    """Within the block, every local file that ``list_files`` lists or ``open_binary`` opens is passed to
    ``check(path, named)`` (its path; once open, again the path its descriptor resolves to, named as the
    file), which raises to refuse it.

    Confined jobs (``service.confinement``) read through it: a symbolic link, or a file swapped for one
    after the request was checked, is refused before a byte of it is read.
    """
    global _GUARD
    previous, _GUARD = _GUARD, check
    try:
        yield
    finally:
        _GUARD = previous


#: The check every local file written (``atomic_write``, ``publish_file``) must pass, or None
#: (``guarded_writes``); process-wide for the same reason as ``_GUARD``.
_WRITE_GUARD: Callable[[str, str], None] | None = None


@contextmanager
def guarded_writes(check: Callable[[str, str], None]) -> Iterator[None]:
    """Within the block, every local file that ``atomic_write`` or ``publish_file`` writes is passed to
    ``check(path, named)`` first: ``path`` is the file in the folder that was opened to write it (through its
    descriptor, so resolved as it is, links and all), ``named`` the file as the caller named it.

    The file is then created and renamed relative to that open folder, so a folder swapped for a symbolic
    link after the check cannot redirect the write. Confined jobs write through it: a result folder that is
    (or becomes) a link into emrml's home or out of the data roots is refused before a byte is written.
    """
    global _WRITE_GUARD
    previous, _WRITE_GUARD = _WRITE_GUARD, check
    try:
        yield
    finally:
        _WRITE_GUARD = previous


Check = Callable[[str, str], None]
#: One request's own (read, write) checks (``guarded_here``), before the process-wide ones: a context
#: variable, so a threaded server's requests neither see nor end each other's.
_HERE: ContextVar[tuple[Check, Check] | None] = ContextVar("storage_guards", default=None)


@contextmanager
def guarded_here(check: Check, write_check: Check) -> Iterator[None]:
    """``guarded(check)`` and ``guarded_writes(write_check)`` for this context only (a server's request),
    which also covers ``list_folder`` (the folder as opened), ``make_folder`` and ``delete`` (each in its
    parent folder as opened, through ``write_check``)."""
    reset = _HERE.set((check, write_check))
    try:
        yield
    finally:
        _HERE.reset(reset)


def _read_guard() -> Check | None:
    here = _HERE.get()
    return here[0] if here is not None else _GUARD


def _write_guard() -> Check | None:
    here = _HERE.get()
    return here[1] if here is not None else _WRITE_GUARD


def _open_folder(directory: str, name: str, target: str) -> int:
    """A descriptor of the folder ``directory`` that the file ``name`` is about to be written in, having
    passed the write guard (if any) with the file's path as that descriptor resolves it."""
    folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    guard = _write_guard()
    if guard is not None:
        try:
            guard(os.path.join(opened_path(folder, directory), name), target)
        except BaseException:
            os.close(folder)
            raise
    return folder


def opened_path(descriptor: int, path: str) -> str:
    """The file an open descriptor is (Linux names it under /proc); ``path`` where that is not known."""
    proc = f"/proc/self/fd/{descriptor}"
    return proc if os.path.exists(proc) else path


class LocalBackend:
    """Files on a local (or mounted) file system."""

    def list(self, location: str) -> list[FileRef]:
        root = local_path(location)
        if not os.path.isdir(root):
            if location.endswith("/"):
                raise NotADirectoryError(20, "Not a directory", root)
            guard = _read_guard()
            if guard is not None:
                guard(root, root)
            info = os.stat(root)
            return [_file_ref(root, info, "")] if stat.S_ISREG(info.st_mode) else []
        files = []
        guard = _read_guard()
        for directory, subdirectories, names in os.walk(root, onerror=_raise):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
            for name in names:
                if not _visible(name):
                    continue
                path = os.path.join(directory, name)
                try:
                    info = os.stat(path)
                except FileNotFoundError:  # a dangling symbolic link, or removed while listing
                    continue
                if stat.S_ISREG(info.st_mode):
                    if guard is not None:
                        guard(path, path)
                    files.append(_file_ref(path, info, os.path.relpath(path, root).replace(os.sep, "/")))
        files.sort(key=lambda ref: ref.key)
        return files

    def open(self, location: str) -> BinaryIO:
        path = local_path(location)
        if location.endswith("/") or os.path.isdir(path):
            raise IsADirectoryError(21, "Is a directory", path)
        guard = _read_guard()
        if guard is None:
            return open(path, "rb", buffering=BUFFER_BYTES)
        guard(path, path)
        stream = open(path, "rb", buffering=BUFFER_BYTES)  # noqa: SIM115  (returned open)
        try:
            # Checked again through the descriptor: the path may have been swapped for a symbolic link
            # between the check and the open; what the descriptor is cannot change.
            guard(opened_path(stream.fileno(), path), path)
        except BaseException:
            stream.close()
            raise
        return stream

    def delete(self, location: str) -> None:
        target = local_path(location)
        directory, name = os.path.split(target)
        folder = _open_folder(directory, name, target)
        try:
            os.unlink(name, dir_fd=folder)
        finally:
            os.close(folder)

    def is_folder(self, location: str) -> bool:
        return os.path.isdir(local_path(location))

    def list_folder(self, location: str, token: str | None, limit: int) -> Folder:
        root = local_path(location)
        # Listed through a descriptor, checked as opened: a folder swapped for a link after a request's
        # check lists nothing of where the link leads.
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            guard = _read_guard()
            if guard is not None:
                guard(opened_path(folder, root), location)
            with os.scandir(folder) as entries:
                names = sorted((entry.name, entry.is_dir()) for entry in entries)
            if token and not (token.isascii() and token.isdigit()):
                raise InvalidInputException(f"{token!r} is not a page token of folder '{location}'")
            start = int(token or 0)
            page = names[start : start + limit]
            folders = [os.path.join(root, name) + "/" for name, is_dir in page if is_dir]
            files = []
            for name, is_dir in page:
                if not is_dir:
                    with suppress(OSError):
                        info = os.stat(name, dir_fd=folder)
                        files.append(_file_ref(os.path.join(root, name), info, name))
        finally:
            os.close(folder)
        more = start + limit < len(names)
        return Folder(folders, files, str(start + limit) if more else None)

    def exists(self, location: str) -> bool:
        path = local_path(location)
        return os.path.isdir(path) if location.endswith("/") else os.path.exists(path)

    @contextmanager
    def atomic_write(self, location: str) -> Iterator[BinaryIO]:
        target = local_path(location)
        directory, name = os.path.split(target)
        temporary = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            if location.endswith("/") or os.path.isdir(target):
                raise IsADirectoryError(21, "it is a directory", target)
            os.makedirs(directory, exist_ok=True)
            # The temporary file is made, and renamed, in the folder as opened (and checked) now.
            folder = _open_folder(directory, name, target)
        except OSError as exc:
            raise _write_error(location, exc) from exc
        try:
            try:
                # os.open with 0o666 (not mkstemp's 0o600) so the umask decides the final permissions.
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                descriptor = os.open(temporary, flags, 0o666, dir_fd=folder)
            except OSError as exc:
                raise _write_error(location, exc) from exc
            stream = os.fdopen(descriptor, "wb", buffering=BUFFER_BYTES)
            try:
                yield stream
            except BaseException:
                _discard(stream, temporary, folder)
                raise
            try:
                _sync_and_close(stream, temporary, folder)
                os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError as exc:
                _discard(stream, temporary, folder)
                raise _write_error(location, exc) from exc
            with suppress(OSError):  # make the rename durable, where the file system can
                os.fsync(folder)
        finally:
            os.close(folder)


class S3Backend:
    """Objects of S3 or an S3-compatible store (``storage.s3``); a prefix is a "directory"."""

    def __init__(self) -> None:
        self.store = S3Store()
        #: The settings the store was made from (``STORAGE_SETTINGS``), to hand to other processes.
        self.settings: dict[str, Any] = {}

    def list(self, location: str) -> list[FileRef]:
        return self.store.list(location, _visible)

    def open(self, location: str) -> BinaryIO:
        return self.store.open(location, BUFFER_BYTES)

    def exists(self, location: str) -> bool:
        return self.store.exists(location)

    def delete(self, location: str) -> None:
        self.store.delete(location)

    def is_folder(self, location: str) -> bool:
        bucket, key = split(location)
        return not key or (self.store.head(bucket, key) is None and self.store.exists(location))

    def list_folder(self, location: str, token: str | None, limit: int) -> Folder:
        bucket, key = split(location)
        prefix = key if not key or key.endswith("/") else key + "/"
        prefixes, objects, next_token = self.store.list_page(bucket, prefix, token, limit)
        files = [
            FileRef(
                f"s3://{bucket}/{entry['Key']}", entry["Key"], int(entry["Size"]), entry["Key"][len(prefix) :]
            )
            for entry in objects
            if entry["Key"] != prefix
        ]
        return Folder([f"s3://{bucket}/{p}" for p in prefixes], files, next_token)

    @contextmanager
    def atomic_write(self, location: str) -> Iterator[BinaryIO]:
        try:
            with self.store.atomic_write(location) as stream:
                yield stream
        except OSError as exc:
            raise _write_error(location, exc) from exc


_LOCAL = LocalBackend()
_S3 = S3Backend()


#: The settings storage is made from: what a process that did not load the settings (a Spark executor)
#: needs to read and write the same locations.
STORAGE_SETTINGS = (
    "s3_endpoint_url", "s3_region", "s3_sse", "s3_sse_kms_key_id", "s3_part_bytes", "s3_cse_key",
    "s3_cse_old_keys", "kms_endpoint_url",
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
        return _S3
    scheme = _SCHEME.match(location)
    if scheme and scheme.group(1) != "file":
        raise InvalidInputException(
            f"'{location}': unsupported scheme '{scheme.group(1)}' (use a local path, file:// or s3://)"
        )
    return _LOCAL


def local_path(location: str) -> str:
    """The absolute path of a local location (``~`` expanded, relative to the working directory)."""
    if "\x00" in location:
        # The OS takes no NUL in a path: refused here as bad input rather than a ValueError from os.*.
        raise InvalidInputException(f"{location!r} holds a NUL character, which no file path may hold")
    if location.startswith("file://"):
        # Split by hand: urlsplit would cut a '#' or '?' that is part of a file name.
        host, slash, path = location[len("file://") :].partition("/")
        if host not in ("", "localhost") or not slash:
            raise InvalidInputException(
                f"'{location}' is not a local file URI (expected file:///absolute/path)"
            )
        return os.path.abspath("/" + unquote(path))
    return os.path.abspath(os.path.expanduser(location))


def _file_ref(path: str, info: os.stat_result, name: str) -> FileRef:
    return FileRef(uri=path, key=path.lstrip("/"), size=info.st_size, name=name)


def _visible(name: str) -> bool:
    """Whether a file (by its path relative to the listed location) is data: not hidden, not a schema."""
    return not any(part.startswith(".") for part in name.split("/")) and not name.endswith(SCHEMA_SUFFIX)


def _raise(error: OSError) -> None:
    raise error


def _os_error(exc: OSError, what: str, location: str) -> InvalidInputException:
    if isinstance(exc, FileNotFoundError):
        return InvalidInputException(f"{what} '{location}' does not exist")
    if isinstance(exc, IsADirectoryError):
        return InvalidInputException(f"{what} '{location}' is a directory, not a file")
    if isinstance(exc, NotADirectoryError):
        return InvalidInputException(f"{what} '{location}' is not a directory")
    return InvalidInputException(f"{what} '{location}' cannot be read: {exc.strerror or exc}")


def _write_error(location: str, exc: OSError) -> InvalidInputException:
    return InvalidInputException(f"cannot write '{location}': {exc.strerror or exc}")


def _discard(stream: BinaryIO, temporary: str, folder: int) -> None:
    stream.close()
    with suppress(FileNotFoundError):
        os.unlink(temporary, dir_fd=folder)


def _sync_and_close(stream: BinaryIO, path: str, folder: int) -> None:
    if stream.closed:  # the writer closed it (pyarrow sinks do): sync through a fresh descriptor
        reopened = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder)
        try:
            os.fsync(reopened)
        finally:
            os.close(reopened)
        return
    stream.flush()
    os.fsync(stream.fileno())
    stream.close()
