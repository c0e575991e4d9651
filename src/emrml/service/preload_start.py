"""Imported first by the job fork server: pauses the cyclic garbage collector while it imports the job
code (``service.forkserver``; ``preload_end`` resumes it). A process that imported the job code already
(one importing every module, as a test does) keeps its collector as it is."""

import sys

from emrml import collector

if "emrml.service.preload" not in sys.modules:
    collector.pause()
