"""What every kind of storage provides (``Backend``) and the values it returns: a listed file
(``FileRef``) and a page of a folder (``Folder``). ``locations`` picks the backend of a location;
``local`` and ``s3`` implement them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from emrml.errors import AccessDeniedException, AmazonMLError, InvalidInputException

#: Buffer size of the streams ``open_binary`` and ``atomic_write`` return.
BUFFER_BYTES = 1 << 20
#: Runs the one step that makes a write visible at its location (a rename, the completion of an upload):
#: a job's attempt passes one that runs it only while the attempt still holds the job, holding it meanwhile
#: (``service.worker.JobContext.fenced``), and raises instead when it no longer does.
Commit = Callable[[Callable[[], None]], None]


def commit_now(step: Callable[[], None]) -> None:
    """The ``Commit`` of a write nobody else may race: the step runs at once."""
    step()


#: The console puts a data file's schema beside it as ``<data>.schema``.
SCHEMA_SUFFIX = ".schema"


@dataclass(frozen=True)
class FileRef:
    """One file of a location.

    ``uri`` names it as the user would (for local files, the absolute path); ``key`` is its object key:
    ``k`` for ``s3://bucket/k``, the absolute path without its leading ``/`` for local files. ``name`` is
    its path relative to the location that listed it ("" when the location is the file itself): what
    random splits hash, so data split in one folder splits the same in another. ``size`` is in bytes;
    ``modified_ns`` a local file's modification time when listed (0 for S3 objects), ``etag`` an S3
    object's ETag when listed (its version; "" for local files), for ``locations.check_unchanged``.
    """

    uri: str
    key: str
    size: int
    name: str = ""
    modified_ns: int = field(default=0, compare=False)
    etag: str = field(default="", compare=False)


class Backend(Protocol):
    """Access to one kind of location.

    Reading methods raise ``FileNotFoundError`` for a missing file and another ``OSError`` for one that
    cannot be read; ``atomic_write`` raises ``storage_error``'s error when the file cannot be written, and
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

    def holds_no_file(self, location: str) -> bool:
        """Whether ``location`` is a folder (an S3 prefix) below which ``list`` would find no file."""
        ...

    def atomic_write(self, location: str, commit: Commit = commit_now) -> AbstractContextManager[BinaryIO]:
        """A writable stream whose bytes appear at ``location`` only when the block exits without error;
        the step that makes them appear (a rename, an upload's completion) runs through ``commit``."""
        ...


@dataclass(frozen=True)
class Folder:
    """One page of a folder (a directory, or an S3 prefix up to the next ``/``), for browsing."""

    folders: list[str]
    files: list[FileRef]
    #: Pass to ``list_folder`` for the next page; None on the last page.
    next_token: str | None


def storage_error(message: str, exc: OSError) -> AmazonMLError:
    """The user's error for a storage operation that failed with ``exc``: ``AccessDeniedException`` when the
    store refused it (S3's AccessDenied, a local EACCES), as emrml's own refusals are (CLI exit code 7);
    else ``InvalidInputException``. ``message`` says what failed; the store's reason follows it."""
    kind = AccessDeniedException if isinstance(exc, PermissionError) else InvalidInputException
    return kind(f"{message}: {exc.strerror or exc}")


def write_error(location: str, exc: OSError) -> AmazonMLError:
    return storage_error(f"cannot write '{location}'", exc)


def visible(name: str) -> bool:
    """Whether a file (by its path relative to the listed location) is data: not hidden, not a schema."""
    return not any(part.startswith(".") for part in name.split("/")) and not name.endswith(SCHEMA_SUFFIX)
