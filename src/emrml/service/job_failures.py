"""How a job that did not complete is told: the messages of its failures and the exit codes of a worker
that ended without recording its outcome (``service.worker`` records them; ``service.jobs``, the runner,
reads the exit codes to retry the job or fail it).

An internal error is logged under a reference, never shown: its text can carry paths, SQL or other users'
data. A full disk, an unwritable folder, a full or busy metastore are told in words a user can act on.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
import traceback
import uuid
from contextlib import suppress

from emrml.config import Settings
from emrml.service.metastore import BUSY_SECONDS, is_full, out_of_service, shown_url

log = logging.getLogger(__name__)


def busy(settings: Settings, exc: BaseException) -> bool:
    """Whether the metastore refused a statement because another process held it locked too long."""
    return not is_full(exc) and out_of_service(exc, settings.database_url) is not None


#: What each kind of job does, in the words a user knows it by.
JOB_WORK = {
    "DataSource": "Reading the data and computing its statistics",
    "MLModel": "Training the model",
    "Evaluation": "Evaluating the model",
    "BatchPrediction": "Scoring the batch prediction",
}


def internal_failure(settings: Settings, kind: str, entity_id: str) -> str:
    """Log the exception being handled under a new reference; return the message the user sees.

    Exception text can carry paths, SQL or other users' data: it goes to the log only (the process's log
    and ``<home>/logs/jobs.log``, owner-only, which a CLI user without a server reads too), and the
    message says what failed and the reference that finds the entry.
    """
    reference = uuid.uuid4().hex[:12]
    entry = f"job {kind} {entity_id} failed (reference {reference}):\n{traceback.format_exc()}"
    log.error("%s", entry)
    folder = settings.home / "logs"
    with suppress(OSError):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(folder / "jobs.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as stream:
            stream.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {entry}\n")
    work = JOB_WORK.get(kind, f"The {kind} job")
    return (
        f"{work} failed with an internal error; the log ({folder / 'jobs.log'} on the machine that ran it) "
        f"has the details under reference {reference}"
    )


#: Errors of a disk that is full or past a limit (a quota, a file size limit): no bug, no retry helps.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: Errors of a folder the job may not write (read-only file system, permissions).
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def system_failure(settings: Settings, kind: str, entity_id: str, exc: OSError) -> str:
    """The message of a job that failed for want of disk space or of a writable folder, telling what to
    do; any other system error is an internal failure (logged, with a reference)."""
    if exc.errno not in _NO_ROOM | _NOT_WRITABLE:
        return internal_failure(settings, kind, entity_id)
    log.warning("%s %s failed: %s", kind, entity_id, exc)
    work = JOB_WORK.get(kind, f"The {kind} job")
    where = f" ({exc.filename})" if exc.filename else ""
    reason = f"{os.strerror(exc.errno)}{where}"
    if exc.errno in _NO_ROOM:
        return (
            f"{work} failed: {reason}: the disk of the emrml home ({settings.home}) or of its scratch folder "
            f"({settings.scratch_dir}) is full or past a size limit; free some space and run it again"
        )
    return f"{work} failed: a file could not be written: {reason}"


def metastore_full(settings: Settings, kind: str) -> str:
    """The message of a job the metastore had no room for (``metastore.is_full``), naming it."""
    work = JOB_WORK.get(kind, f"The {kind} job")
    return (
        f"{work} failed: the metastore ({shown_url(settings.database_url)}) is full: the disk it is on is "
        "full or past a size limit; free some space and run it again"
    )


#: The exit code of a worker whose pool lost a process (``run_job_in_this_process``).
POOL_DIED = 75
#: The exit code of a worker that found no room in the metastore, not even to record that (``worker_main``).
METASTORE_FULL = 76
#: The exit code of a worker whose metastore another process held locked past its busy timeout.
METASTORE_BUSY = 77


def describe_exit(exitcode: int | None) -> str:
    if exitcode == POOL_DIED:
        return "one of its processes was killed, perhaps by the system short of memory"
    if exitcode == METASTORE_FULL:
        return "the metastore was full: its disk is full or past a size limit"
    if exitcode == METASTORE_BUSY:
        return f"the metastore was busy: another process held it locked for longer than {BUSY_SECONDS} s"
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
