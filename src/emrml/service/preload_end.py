"""Imported last by the job fork server: resumes the collector ``preload_start`` paused, freezing what the
preload imported, before the fork server forks a worker (``service.forkserver``). The workers inherit the
collector running, and none of its collections scans those objects (nor writes their pages, which they
share with the fork server). It also has the fork server end without its teardown once its clients are gone
(``forkserver.end_with_its_clients``)."""

import atexit
import os

from emrml import collector
from emrml.service import forkserver

collector.resume()
atexit.register(forkserver.end_with_its_clients, os.getpid())
