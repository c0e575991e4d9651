"""What the job fork server imports once, before it forks each worker: the job code, with Arrow's pandas
probe settled (``emrml.core.arrow``) so that no worker imports pandas, its type inference settled
(``settle_type_inference``), the metastore's ORM ready to use (``ready_metastore``), the access checks
every job starts with (``service.job_grants``: 5-15 ms a worker otherwise), and the C allocator told to
keep the memory a job frees (``keep_freed_memory``).
``emrml.service.forkserver`` adds the learner and scorer modules to the list in a long-lived server."""

import ctypes
import sqlite3  # noqa: F401  (the embedded metastore's driver: see ready_metastore)

# pyarrow imports numpy.ma the first time it converts a numpy array (to test for masked arrays), which
# would cost every worker 10-20 ms in the middle of its job.
import numpy.ma  # noqa: F401
import pyarrow as pa
import sqlalchemy.dialects.sqlite  # noqa: F401  (see ready_metastore)
from sqlalchemy.orm import configure_mappers

from emrml.core.arrow import skip_pandas_probe
from emrml.service import access, rows, tasks  # noqa: F401  (the access checks; the mapped classes; the jobs)

#: From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks below this size come from the heap, not from a mapping of their own (glibc's largest automatic
#: threshold, fixed from the start rather than reached after the first frees).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap returned to the system only beyond this size.
TRIM_THRESHOLD = 128 << 20


def keep_freed_memory() -> None:
    """Let glibc's malloc reuse the memory of a batch's buffers for the next batch instead of returning it
    to the system and faulting fresh pages in again.

    Every batch allocates the same few-megabyte blocks (the CSV block read, numpy temporaries): by default
    each of them is a fresh mapping, or heap memory trimmed back after use, and the page faults of
    touching them again cost batch scoring about a tenth of its CPU time (two passes over a million rows:
    170,000-200,000 minor page faults by default, 40,000 with these settings). What a process keeps is
    bounded by its largest batch, as before. Python has no binding for ``mallopt``, hence ctypes;
    elsewhere than glibc this does nothing.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def ready_metastore() -> None:
    """Configure the ORM's mappers here, once: every worker opens the metastore and writes its job's row
    first thing, and would otherwise configure them anew (30-45 ms), as it would import the embedded
    metastore's dialect and driver (SQLite, 30-35 ms; imported above; a metastore on another database
    has each worker import its own)."""
    configure_mappers()


def settle_type_inference() -> None:
    """Infer the Arrow type of a Python value once here: pyarrow's first inference imports
    ``dateutil.relativedelta`` (when installed, as botocore has it) to recognize such objects, which cost a
    datasource job's worker 2-30 ms, holding the GIL, in the middle of its statistics (the first comparison
    of a column with ``""``, a scalar inferred from Python)."""
    pa.scalar("")


skip_pandas_probe()  # first: inference must not find pandas either
settle_type_inference()
keep_freed_memory()
ready_metastore()
