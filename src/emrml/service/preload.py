"""What the job fork server imports once, before it forks each worker: the job code, with Arrow's pandas
probe settled (``emrml.core.arrow``) so that no worker imports pandas. ``emrml.service.forkserver`` adds
the learner and scorer modules to the list in a long-lived server."""

# pyarrow imports numpy.ma the first time it converts a numpy array (to test for masked arrays), which
# would cost every worker 10-20 ms in the middle of its job.
import numpy.ma  # noqa: F401

from emrml.core.arrow import skip_pandas_probe
from emrml.service import tasks  # noqa: F401  (registers the job functions)

skip_pandas_probe()
