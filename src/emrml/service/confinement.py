"""Which local files a request arriving through ``emrml serve`` may name: the one door for locations.

Every operation that takes a location (a data file or prefix, a schema, a recipe, an output or staging
folder) calls ``check_location`` with it before anything is read or recorded. The CLI and the library
working on their own home read any file their user can; a request through the HTTP API or the console
(``REMOTE``) may name local files only inside the data roots (``Settings.data_roots``, EMRML_DATA_ROOTS;
default ``<home>/data``), after symbolic links and ``..`` are resolved, and never one of the home's own
files (metastore, keys, credentials, scratch, samples of datasources, models, logs), whatever the roots
say.

Objects a remote request creates are recorded ``confined``: their jobs read files through
``job_guard``, which checks each file again as it is listed and opened (a file swapped for a symbolic link
after the request was checked is refused, never read). Refusals name the setting and the location, never
anything read from a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from sqlalchemy.engine import make_url

from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.service.operations import REMOTE, running_as
from emrml.storage import local, locations

if TYPE_CHECKING:
    from emrml.config import Settings
    from emrml.service.access import Access
    from emrml.service.app import EmrML


class Authorizing(Protocol):
    """What ``check_location`` uses of an ``EmrML``: a stream consumer process, which has no EmrML, checks
    its locations again with these (``service.streams.check_destinations``)."""

    @property
    def access(self) -> Access: ...

    @property
    def settings(self) -> Settings: ...


#: What emrml keeps in its home (besides the data roots a user puts there): never read or written through
#: a request, whatever the roots say. ``metastore.db`` covers its ``-wal`` and ``-shm`` files too.
HOME_FILES = (
    "metastore.db",
    "secrets.key",
    "admin-credentials.json",
    "emrml.toml",
    "scratch",
    "datasources",
    "models",
    "evaluations",
    "logs",
    "streams",
)


#: The umask of the processes that run jobs and stream consumers. Everything emrml creates in its home
#: (metastore, keys, datasource samples, models, scratch, logs, dead letters) is then owner-only: files
#: 0600, folders 0700, with no mode to get right at each of the many places that write. What those
#: processes write outside the home (batch results, staged query results, stream outputs) is owner-only too:
#: copies of data their owner could read, which on a shared machine should not become everyone's by default
#: (as S3 objects are private to their account until shared); ``chmod`` shares them.
OWNER_ONLY_UMASK = 0o077


def prepare_home(settings: Settings) -> None:
    """Create the home owner-only (0700), tightening one created before, and the SQLite metastore's file
    0600 before SQLite opens it (SQLite gives its -wal and -shm files the database file's mode)."""
    home = settings.home
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except PermissionError as exc:
        raise AccessDeniedException(f"emrml home {home}: cannot create the folder ({exc.strerror})") from None
    except OSError as exc:  # a file in the way, a read-only or pseudo file system
        raise InvalidInputException(f"emrml home {home}: cannot create the folder ({exc.strerror})") from None
    if os.statvfs(home).f_flag & os.ST_RDONLY:
        # Every job writes there (samples, models, scratch), as SQLite does its metastore's journal even to
        # read it: refused here, rather than as an internal error on the first chmod, or "cannot open it as
        # an SQLite database" of a metastore that is whole.
        raise InvalidInputException(
            f"emrml home {home}: its file system is read-only; emrml writes its metastore, datasource "
            "samples, models and scratch files there: mount it read-write or choose another home "
            "(--home, EMRML_HOME)"
        )
    try:
        if home.stat().st_mode & 0o077 and home.stat().st_uid == os.getuid():
            home.chmod(0o700)
        if not settings.metastore_url:
            database = home / "metastore.db"
            # Only a missing file is opened: closing a descriptor of a database this process already has
            # open (a second EmrML on the same home, the CLI run in-process) would drop every POSIX lock the
            # process holds on it, SQLite's included, and break WAL locking for every other process.
            with suppress(FileExistsError):
                os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            for suffix in ("", "-wal", "-shm"):
                path = home / f"metastore.db{suffix}"
                if path.exists() and path.stat().st_mode & 0o077:
                    path.chmod(0o600)
    except PermissionError as exc:  # a home owned by another user, its metastore file not writable
        raise AccessDeniedException(f"emrml home {home}: {exc.strerror} ({exc.filename})") from None
    except OSError as exc:
        raise InvalidInputException(f"emrml home {home}: {exc.strerror} ({exc.filename})") from None


def check_location(
    app: Authorizing,
    location: str,
    *,
    member: str,
    write: bool = False,
    remote: bool | None = None,
    below: bool = False,
) -> None:
    """Refuse ``location`` (the request's ``member``) with InvalidInputException if it is malformed, and
    with AccessDeniedException unless the running request may read it (``write``: write below it).
    ``remote``: whether the request came through the server (default: ``REMOTE``, which ``EmrML.call``
    sets; the console passes True for files it reads itself). ``below``: every file below the location
    is used when it names a folder (data, outputs), so none of them may be denied either
    (``Access.check_storage_below``).

    Local locations of a remote request must resolve into a data root and not into the home's own files;
    ``s3://`` locations, Kinesis streams (``kinesis://NAME``) and every location of the CLI or library on
    its own home pass.
    """
    try:
        # A malformed location (empty, another scheme, s3:// without a bucket) is bad input, whoever asks.
        # A Kinesis stream is no file location: its name was checked by the stream's own validation.
        if not location.startswith("kinesis://"):
            locations.check_syntax(location)
    except InvalidInputException as exc:
        raise InvalidInputException(f"{member}: {exc.message}") from None
    # Whether the caller's groups grant storage there (a user's, through the server; the root may).
    app.access.check_storage(location, write=write)
    if (REMOTE.get() if remote is None else remote) and not location.startswith(("s3://", "kinesis://")):
        if not location.startswith(("file://", "/")):
            # Resolved against the server's working folder, which is not the caller's: a refusal as "outside
            # the data roots" would send the caller after permissions.
            raise InvalidInputException(
                f"{member}: '{location}' is not an absolute path; a request through the server names a local "
                "file by its absolute path (/srv/data/file.csv or file:///srv/data/file.csv)"
            )
        refusal = _refusal(app.settings, locations.local_path(location), write=write)
        if refusal:
            raise AccessDeniedException(f"{member} '{location}' {refusal}")
    if below:  # after the data roots: its files may be listed
        app.access.check_storage_below(location, write=write)


def check_schema_beside(app: Authorizing, data_location: str) -> None:
    """``check_location`` for the schema a datasource given no schema reads beside its data (spec open
    question 6): the request does not name that file, but its job reads it for the caller all the same.

    Which of ``<file>.schema`` and ``<prefix>/.schema`` the job reads depends on whether the data is a
    file or a folder: a local path is looked at; an S3 location is not asked (the request would wait on
    the store, or fail where the job fails with a FAILED datasource), so both must be readable.
    """
    if data_location.startswith("s3://"):
        candidates = locations.schema_candidates(data_location)
    else:
        candidates = [locations.schema_location_for(data_location)]
    for candidate in candidates:
        check_location(
            app,
            candidate,
            member="the schema file beside DataSpec.DataLocationS3 (no DataSpec.DataSchema given)",
        )


def checked_as_opened(app: EmrML, *, remote: bool | None = None) -> AbstractContextManager[None]:
    """Local files a request through the server reads, writes, lists, creates or deletes itself within the
    block (not through a job: InferDataSchema's and PlanCapacity's samples, the storage browser) are checked
    again as opened, through descriptors, as confined jobs' are: a location passes ``check_location``, but
    the folder it names may hold, or become, a symbolic link out of the data roots. ``remote``: whether the
    request came through the server (default: ``REMOTE``); the CLI and the library on their own home read
    any file their user can."""
    if not (REMOTE.get() if remote is None else remote):
        return nullcontext()
    return checked_here(app.settings)


def checked_here(settings: Settings) -> AbstractContextManager[None]:
    """Within the block, in this context only (a thread: a server's request, a stream's consumer), local
    files are read and written as confined jobs' are: each checked again as opened, through descriptors."""
    return local.guarded_here(job_guard(settings), job_write_guard(settings))


def open_for_server(app: EmrML, location: str, *, member: str) -> BinaryIO:
    """Open a file the server reads for a caller outside ``EmrML.call`` (the console's downloads): checked
    by ``check_location``, then again through the opened descriptor, as confined jobs read."""
    check_location(app, location, member=member, remote=True)
    stream = locations.open_binary(location, what=member)
    if not location.startswith("s3://"):
        opened = local.opened_path(stream.fileno(), locations.local_path(location))
        refusal = _refusal(app.settings, opened, write=False)
        if refusal:
            stream.close()
            raise AccessDeniedException(f"{member} '{location}' {refusal}")
    return stream


def open_output_for_server(app: EmrML, location: str, *, owner: str, member: str) -> BinaryIO:
    """``open_for_server`` for a file a job wrote for ``owner`` (a batch prediction's manifest and results),
    opened for anyone who may read that object (the console's downloads): the file, as opened, must also lie
    where ``owner`` may read or write (``storage:Read`` or ``storage:Write``). Its folder is the owner's to
    change: a result replaced by a link to a file in the data roots that the owner may not read must not be
    handed to the owner, nor to anyone, as a result."""
    stream = open_for_server(app, location, member=member)
    opened = location
    if not location.startswith("s3://"):
        opened = local.opened_path(stream.fileno(), locations.local_path(location))
    with running_as(owner, remote=True):
        try:
            try:
                app.access.check_storage(opened, write=False)
            except AccessDeniedException:
                app.access.check_storage(opened, write=True)
        except AccessDeniedException:
            stream.close()
            raise AccessDeniedException(
                f"{member} '{location}' is a file where its batch prediction's creator may neither read nor "
                "write (storage:Read, storage:Write); it was not read"
            ) from None
    return stream


def server_write_refusal(settings: Settings, path: str) -> str | None:
    """Why the server may not write the local ``path`` for a request itself (the console's samples), links
    and ``..`` resolved: outside the data roots or one of the home's own files; None when it may."""
    return _refusal(settings, path, write=True)


def server_files(settings: Settings) -> tuple[str, ...]:
    """The server's own files outside its home that its settings name, resolved: the TLS key, certificate
    and client CA (replaced, the CA would admit another's client certificates), the files of the client-side
    encryption keys (``aes:``/``rsa:``, old ones too) and a SQLite metastore kept elsewhere. A data root may
    hold them (``/srv`` with ``/srv/tls/key.pem``), and they are never read or written through the server,
    as the home's own files are not."""
    named = [settings.tls_key, settings.tls_cert, settings.tls_client_ca]
    for spec in (settings.s3_cse_key, *settings.s3_cse_old_keys.split(",")):
        kind, _, argument = spec.strip().partition(":")
        if kind in ("aes", "rsa") and argument:
            named.append(os.path.expanduser(argument))
    if settings.metastore_url:
        url = make_url(settings.metastore_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            named += [url.database + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    return tuple(os.path.realpath(path) for path in named if path)


def _refusal(settings: Settings | JobGuard, path: str, *, write: bool) -> str | None:
    """Why the local ``path`` may not be used by a confined request; None when it may."""
    # realpath resolves every symbolic link and '..' of the part of the path that exists; a part that does
    # not exist yet (a new output folder) can hold no link.
    resolved = os.path.realpath(path)
    home = os.path.realpath(settings.home)
    roots = [os.path.realpath(root) for root in settings.data_roots]
    verb = "written" if write else "read"
    own_files = settings.own_files if isinstance(settings, JobGuard) else server_files(settings)
    if resolved in own_files:
        return (
            f"is one of the server's own files (a key or its metastore, named by its settings), which cannot "
            f"be {verb} through the server"
        )
    if _inside(resolved, home):
        relative = os.path.relpath(resolved, home)
        first = relative.split(os.sep, 1)[0]
        own = relative == "." or any(first == name or first.startswith(f"{name}-") for name in HOME_FILES)
        # A data root inside the home (the default <home>/data) is the user's; the rest of the home is not.
        in_home_root = any(_inside(resolved, root) and root != home and _inside(root, home) for root in roots)
        if own or not in_home_root:
            return f"is one of emrml's own files in its home, which cannot be {verb} through the server"
    if not any(_inside(resolved, root) for root in roots):
        listed = os.pathsep.join(str(root) for root in settings.data_roots)
        return (
            f"is outside the data roots ({listed}); the server may have files {verb} only there "
            "(setting EMRML_DATA_ROOTS)"
        )
    return None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class JobGuard:
    """The check a confined job applies to each local file it lists or opens (``write`` False) or writes
    (``storage.locations``): ``path`` is resolved, ``named`` is what the message calls the file. A plain
    object rather than a closure, so that it pickles: a Spark job's executors, which open the files, apply
    the driver's (``engine.spark.runner``)."""

    home: Path
    data_roots: tuple[Path, ...]
    write: bool = False
    #: ``server_files``: the server's own files outside the home, resolved.
    own_files: tuple[str, ...] = ()

    def __call__(self, path: str, named: str) -> None:
        refusal = _refusal(self, path, write=self.write)
        if refusal:
            done = "written" if self.write else "read"
            raise AccessDeniedException(f"the file '{named}' {refusal}; it was not {done}")


def job_guard(settings: Settings) -> JobGuard:
    """The check a confined job applies to each local file it lists or opens."""
    return JobGuard(settings.home, tuple(settings.data_roots), own_files=server_files(settings))


def job_write_guard(settings: Settings) -> JobGuard:
    """The check a confined job applies to each local file it writes: ``path`` is the file in its folder as
    opened."""
    return JobGuard(settings.home, tuple(settings.data_roots), write=True, own_files=server_files(settings))


def check_job_output(settings: Settings, location: str, *, member: str) -> None:
    """A confined job's output folder, checked again when the job starts writing (a folder swapped for a
    symbolic link since the request was checked is refused)."""
    if location.startswith("s3://"):
        return
    refusal = _refusal(settings, locations.local_path(location), write=True)
    if refusal:
        raise AccessDeniedException(f"{member} '{location}' {refusal}")


@contextmanager
def confined_job(settings: Settings, confined: bool) -> Iterator[None]:
    """Run a job's reads under ``job_guard`` when any object it works for was created by a remote request."""
    if not confined:
        yield
        return
    with local.guarded(job_guard(settings)):
        yield


@contextmanager
def confined_writes(settings: Settings, confined: bool) -> Iterator[None]:
    """Run a job's writes under ``job_write_guard`` when the object it writes for (a batch prediction, a
    SQL datasource's staged result) was created by a remote request: every local file is checked in the
    folder it is written to, as that folder is when written (a ``result/`` folder that is a symbolic link
    into the home, or one swapped for a link while the job ran, is refused)."""
    if not confined:
        yield
        return
    with local.guarded_writes(job_write_guard(settings)):
        yield
