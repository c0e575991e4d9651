"""An SQLite metastore that cannot grow for a quota exceeded (EDQUOT) or a file size limit (EFBIG) — which
SQLite answers with a write error, not SQLITE_FULL as for a disk full — refuses a request naming the
metastore as full, as for a disk full; a disk failing otherwise stays an internal error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# A process whose files may not grow past a few pages (RLIMIT_FSIZE: the metastore's writes fail with EFBIG;
# Python ignores SIGXFSZ), asked to record a datasource as large as several pages. ``argv[3]``: what the
# probe beside the metastore meets — "real" (as it is), or, the size limit hidden from the check, "EDQUOT"
# (a quota exceeded) or "EIO" (a failing disk).
_LIMITED_REQUEST = """
import errno, json, os, resource, sys
from emrml.config import Settings
from emrml.errors import InternalServerException
from emrml.service import metastore
from emrml.service.app import EmrML

app = EmrML(Settings.load(environ={}, home=sys.argv[1]))
bank = sys.argv[2]
schema = open(bank + "/data.csv.schema").read() + " " * 40_000
probe = sys.argv[3]
if probe != "real":
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    unlimiting = {**vars(resource), "getrlimit": staticmethod(lambda _: unlimited)}
    metastore.resource = type("Unlimited", (), unlimiting)

    def refused(_fd, _offset, _length):
        raise OSError(getattr(errno, probe), os.strerror(getattr(errno, probe)))

    metastore.os = type("Refusing", (), {**vars(os), "posix_fallocate": staticmethod(refused)})
resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))
try:
    app.call(
        "CreateDataSourceFromS3",
        {"DataSourceId": "ds-big", "DataSpec": {"DataLocationS3": bank + "/data.csv", "DataSchema": schema}},
    )
except InternalServerException as exc:
    print(json.dumps({"refused": exc.message}))
except Exception as exc:
    print(json.dumps({"failed": type(exc).__name__ + ": " + str(exc)}))
else:
    print(json.dumps({"created": True}))
"""


def _request(home: Path, shared_datasets: Path, probe: str) -> dict[str, str]:
    from emrml.config import Settings
    from emrml.service.app import EmrML

    EmrML(Settings.load(environ={}, home=home)).close()  # the metastore migrated, before the limit
    ended = subprocess.run(
        [sys.executable, "-c", _LIMITED_REQUEST, str(home), str(shared_datasets / "bank_marketing"), probe],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ended.returncode == 0, ended.stderr
    return json.loads(ended.stdout.splitlines()[-1])


@pytest.mark.parametrize("probe", ["real", "EDQUOT"])
def test_a_metastore_past_a_size_limit_or_a_quota_is_full(
    tmp_path: Path, shared_datasets: Path, probe: str
) -> None:
    home = tmp_path / "home"
    answer = _request(home, shared_datasets, probe)
    assert answer == {
        "refused": f"the metastore (sqlite:///{home / 'metastore.db'}) is full: the disk it is on is full or "
        "past a size limit; free some space and try again"
    }


def test_a_metastore_whose_disk_fails_otherwise_is_not_said_full(
    tmp_path: Path, shared_datasets: Path
) -> None:
    answer = _request(tmp_path / "home", shared_datasets, "EIO")
    assert "failed" in answer and "disk I/O error" in answer["failed"], answer
