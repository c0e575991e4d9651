"""Imported last by the job fork server: resumes the collector ``preload_start`` paused, freezing what the
preload imported, before the fork server forks a worker (``service.forkserver``). The workers inherit the
collector running, and none of its collections scans those objects (nor writes their pages, which they
share with the fork server)."""

from emrml import collector

collector.resume()
