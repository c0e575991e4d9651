"""Files on this machine's file systems: the local ``Backend``, and the guards confined jobs read and
write through (``guarded``, ``guarded_writes``) so that a path swapped for a symbolic link between a check
and its use cannot redirect the read or the write."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import BinaryIO
from urllib.parse import unquote

from emrml.errors import InvalidInputException
from emrml.storage.backend import (
    BUFFER_BYTES,
    Commit,
    FileRef,
    Folder,
    commit_now,
    visible,
    write_error,
)

#: The most digits of a folder listing's page token (an offset into the folder's sorted names).
_TOKEN_DIGITS = 20

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


def current_guards() -> tuple[Check | None, Check | None]:
    """The (read, write) checks in force here: what another process doing this job's reading and writing
    applies (``use_guards``), a Spark job's executors."""
    return _read_guard(), _write_guard()


def use_guards(guards: tuple[Check | None, Check | None]) -> None:
    """Make ``guards`` (``current_guards`` of the job's driver) this process's checks, replacing those of
    the job it did before: for a process that does one job's work at a time, each piece of work setting
    its job's (a Spark executor's Python worker, at the start of each task)."""
    global _GUARD, _WRITE_GUARD
    _GUARD, _WRITE_GUARD = guards


def _read_guard() -> Check | None:
    here = _HERE.get()
    return here[0] if here is not None else _GUARD


def _write_guard() -> Check | None:
    here = _HERE.get()
    return here[1] if here is not None else _WRITE_GUARD


def _open_folder(directory: str, name: str, target: str, *, create: bool = False) -> int:
    """A descriptor of the folder ``directory`` that the file ``name`` is about to be written in, having
    passed the write guard (if any) with the file's path as that descriptor resolves it; with ``create``,
    its missing parents are made first (``_make_folders``)."""
    if create:
        folder = _make_folders(directory, target)
    else:
        folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    guard = _write_guard()
    if guard is not None:
        try:
            guard(os.path.join(opened_path(folder, directory), name), target)
        except BaseException:
            os.close(folder)
            raise
    return folder


def _make_folders(directory: str, target: str) -> int:
    """A descriptor of the folder ``directory``, creating its missing folders one level at a time: each in
    its parent as opened, after the write guard (if any) passed it there, and opened without following a
    link, so a folder swapped for a symbolic link cannot have folders made outside what the guard allows."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    directory = os.path.normpath(directory or ".")
    missing: list[str] = []
    existing = directory
    while True:
        try:
            folder = os.open(existing, flags)
            break
        except FileNotFoundError:
            parent, name = os.path.split(existing)
            if not name or parent == existing:
                raise
            missing.append(name)
            existing = parent or "."
    guard = _write_guard()
    try:
        for name in reversed(missing):
            if guard is not None:
                guard(os.path.join(opened_path(folder, existing), name), target)
            with suppress(FileExistsError):
                os.mkdir(name, dir_fd=folder)
            inner = os.open(name, flags | os.O_NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder, existing = inner, os.path.join(existing, name)
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
                if not visible(name):
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

    def holds_no_file(self, location: str) -> bool:
        """Whether ``location`` is a directory below which ``list`` would find no file (no file is opened,
        so none is guarded); the walk stops at the first one."""
        root = local_path(location)
        if not os.path.isdir(root):
            return False
        for directory, subdirectories, names in os.walk(root, onerror=_raise):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
            for name in filter(visible, names):
                try:
                    if stat.S_ISREG(os.stat(os.path.join(directory, name)).st_mode):
                        return False
                except FileNotFoundError:  # a dangling symbolic link, or removed meanwhile
                    continue
        return True

    def open(self, location: str) -> BinaryIO:
        path = local_path(location)
        if location.endswith("/") or os.path.isdir(path):
            raise IsADirectoryError(21, "Is a directory", path)
        guard = _read_guard()
        if guard is None:
            return _open_file(path)
        guard(path, path)
        stream = _open_file(path)
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

    def make_folder(self, location: str) -> None:
        """Create the directory ``location`` (and its parents), in its parent folder as opened and checked."""
        target = local_path(location)
        directory, name = os.path.split(target.rstrip("/"))
        folder = _open_folder(directory, name, target, create=True)
        try:
            os.mkdir(name, dir_fd=folder)
        except FileExistsError:
            if not stat.S_ISDIR(os.stat(name, dir_fd=folder).st_mode):
                raise
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
            # A token is an offset this listing handed out: digits, and (int() refusing past 4,300 of
            # them) never more than any folder's count of entries has.
            if token and not (token.isascii() and token.isdigit() and len(token) <= _TOKEN_DIGITS):
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

    def move_in(self, path: str, location: str, commit: Commit = commit_now) -> bool:
        """Rename the local file ``path`` to ``location`` (in the folder as opened and checked, as
        ``atomic_write`` does), through ``commit``; False when the two are on different file systems and it
        must be copied."""
        target = local_path(location)
        directory, name = os.path.split(target)
        try:
            folder = _open_folder(directory, name, target, create=True)
            try:
                commit(lambda: os.replace(path, name, dst_dir_fd=folder))
            finally:
                os.close(folder)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return False
            raise write_error(location, exc) from exc
        return True

    @contextmanager
    def atomic_write(self, location: str, commit: Commit = commit_now) -> Iterator[BinaryIO]:
        target = local_path(location)
        directory, name = os.path.split(target)
        temporary = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            if location.endswith("/") or os.path.isdir(target):
                raise IsADirectoryError(21, "it is a directory", target)
            # The temporary file is made, and renamed, in the folder as opened (and checked) now, its
            # missing parents made one level at a time in theirs.
            folder = _open_folder(directory, name, target, create=True)
        except OSError as exc:
            raise write_error(location, exc) from exc
        try:
            try:
                # os.open with 0o666 (not mkstemp's 0o600) so the umask decides the final permissions.
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                descriptor = os.open(temporary, flags, 0o666, dir_fd=folder)
            except OSError as exc:
                raise write_error(location, exc) from exc
            stream = os.fdopen(descriptor, "wb", buffering=BUFFER_BYTES)
            try:
                yield stream
            except BaseException:
                _discard(stream, temporary, folder)
                raise
            try:
                _sync_and_close(stream, temporary, folder)
                commit(lambda: os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder))
            except OSError as exc:
                _discard(stream, temporary, folder)
                raise write_error(location, exc) from exc
            except BaseException:  # the commit refused (the job is no longer the writer's), or interrupted
                _discard(stream, temporary, folder)
                raise
            with suppress(OSError):  # make the rename durable, where the file system can
                os.fsync(folder)
        finally:
            os.close(folder)


def local_path(location: str) -> str:
    """The absolute path of a local location (``~`` expanded, relative to the working directory)."""
    if location.startswith("file://"):
        # Split by hand: urlsplit would cut a '#' or '?' that is part of a file name.
        host, slash, path = location[len("file://") :].partition("/")
        if host not in ("", "localhost") or not slash:
            raise InvalidInputException(
                f"'{location}' is not a local file URI (expected file:///absolute/path)"
            )
        path = "/" + unquote(path)
    else:
        path = os.path.expanduser(location)
    # The OS takes no NUL in a path: refused here as bad input rather than a ValueError from os.*. Looked
    # for once decoded: a file:// URI's %00 is a NUL too.
    if "\x00" in path:
        raise InvalidInputException(f"{location!r} holds a NUL character, which no file path may hold")
    return os.path.abspath(path)


def _open_file(path: str) -> BinaryIO:
    """``path`` opened for reading, buffered, which must be a regular file: opening a FIFO a location names
    waits for a writer, for ever (holding a request's thread, or a job and its slot), and a device may
    never end. Opened without blocking to look, then read as any file."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", path)
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb", buffering=BUFFER_BYTES)
    except BaseException:
        os.close(descriptor)
        raise


def _file_ref(path: str, info: os.stat_result, name: str) -> FileRef:
    return FileRef(uri=path, key=path.lstrip("/"), size=info.st_size, name=name, modified_ns=info.st_mtime_ns)


def _raise(error: OSError) -> None:
    raise error


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
