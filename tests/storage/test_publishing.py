"""Publishing many local files to S3 at once (``storage.publishing``): the objects are those one
``publish_file`` after another would write, their requests overlap (a few at a time), and a failure leaves
no object and no upload behind."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from emrml.errors import AccessDeniedException
from emrml.storage import locations, publishing
from emrml.storage.locations import publish_file
from emrml.storage.publishing import PUBLISH_AT_ONCE, publish_files
from emrml.storage.s3 import MIN_PART_BYTES
from in_flight import InFlight
from s3_server import S3

#: The requests that make an object appear.
APPEARING = {"put_object", "complete_multipart_upload"}


@pytest.fixture
def small_parts(s3: S3, monkeypatch: pytest.MonkeyPatch) -> int:
    """Objects of at least ``MIN_PART_BYTES`` are multipart uploads (the default is 16 MiB)."""
    store = locations._S3.store
    monkeypatch.setattr(store, "settings", dataclasses.replace(store.settings, part_bytes=MIN_PART_BYTES))
    return MIN_PART_BYTES


def _files(folder: Path, part_bytes: int) -> dict[str, bytes]:
    """Contents by name: small files, and two of more than a part (multipart uploads)."""
    folder.mkdir()
    contents = {f"small-{i}.gz": os.urandom(1000 * i + 1) for i in range(9)}
    contents["large-a.gz"] = os.urandom(part_bytes + 12345)
    contents["large-b.gz"] = os.urandom(2 * part_bytes + 1)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return contents


class Calls:
    """Wraps the store's requests: counts those that make an object appear under way at once (``InFlight``),
    and fails ``refused``: (operation, key) refused."""

    def __init__(self, store: Any, refused: tuple[str, str] = ("", "")) -> None:
        self.store, self.call, self.refused = store, store.call, refused
        self.appearing = InFlight(store.call)
        self.lock = threading.Lock()
        self.operations: list[str] = []

    @property
    def most(self) -> int:
        return self.appearing.most

    def __call__(self, operation: str, bucket: str, key: str = "", **arguments: Any) -> Any:
        with self.lock:
            self.operations.append(operation)
        if (operation, key.rpartition("/")[2]) == self.refused:
            from emrml.storage.s3 import S3AccessDenied

            raise S3AccessDenied("AccessDenied", "Access Denied (test)")
        if operation not in APPEARING:
            return self.call(operation, bucket, key, **arguments)
        return self.appearing(operation, bucket, key, **arguments)


def test_files_published_at_once_are_those_published_one_by_one(
    s3: S3, small_parts: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contents = _files(tmp_path / "a", small_parts)
    for name in contents:
        publish_file(str(tmp_path / "a" / name), s3.uri(f"one-by-one/{name}"))
    _files(tmp_path / "b", small_parts)
    for name, data in contents.items():
        (tmp_path / "b" / name).write_bytes(data)
    calls = Calls(locations._S3.store)
    monkeypatch.setattr(locations._S3.store, "call", calls)
    published: list[str] = []
    moves = [(str(tmp_path / "b" / name), s3.uri(f"at-once/{name}")) for name in contents]
    publish_files(moves, published=published)
    assert published == [location for _, location in moves]
    for name, data in contents.items():
        assert s3.get(f"at-once/{name}") == s3.get(f"one-by-one/{name}") == data
    assert sorted(os.listdir(tmp_path / "b")) == []  # moved
    # The objects appear a few at a time, and only once every upload is sent: no part follows an object's
    # appearance.
    assert 2 <= calls.most <= PUBLISH_AT_ONCE
    first = min(k for k, operation in enumerate(calls.operations) if operation in APPEARING)
    assert "upload_part" not in calls.operations[first:]
    assert calls.operations.count("complete_multipart_upload") == 2


def test_a_refused_object_leaves_no_object_and_no_upload(
    s3: S3, small_parts: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PutObject of one small file is refused after the large files' uploads were sent: the error names
    it, the objects that appeared meanwhile are listed for the caller to remove, and the uploads not yet
    completed are aborted."""
    contents = _files(tmp_path / "a", small_parts)
    refused = "small-4.gz"
    monkeypatch.setattr(locations._S3.store, "call", Calls(locations._S3.store, ("put_object", refused)))
    published: list[str] = []
    moves = [(str(tmp_path / "a" / name), s3.uri(f"out/{name}")) for name in contents]
    with pytest.raises(AccessDeniedException) as caught:
        publish_files(moves, published=published)
    assert s3.uri(f"out/{refused}") in caught.value.message and "AccessDenied" in caught.value.message
    # Listed last: its request failed, which S3 may yet have carried out (its answer lost).
    assert published[-1] == s3.uri(f"out/{refused}")
    assert sorted(s3.list_keys("out/")) == sorted(
        location.removeprefix(s3.uri()) for location in published[:-1]
    )
    for location in published:
        locations.delete(location)
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


def test_a_failed_upload_before_the_step_leaves_nothing(
    s3: S3, small_parts: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part of the second large file is refused: the first one's upload, sent, is aborted; no object
    appears, and the step that would make them appear never runs."""
    contents = _files(tmp_path / "a", small_parts)
    monkeypatch.setattr(
        locations._S3.store, "call", Calls(locations._S3.store, ("upload_part", "large-b.gz"))
    )
    moves = [(str(tmp_path / "a" / name), s3.uri(f"out/{name}")) for name in contents]
    steps: list[Any] = []
    with pytest.raises(AccessDeniedException) as caught:
        publish_files(moves, steps.append)
    assert caught.value.message.startswith(f"cannot write '{s3.uri('out/large-b.gz')}'")
    assert steps == []
    assert s3.list_keys("out/") == []
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


def test_a_refused_step_leaves_nothing(s3: S3, small_parts: int, tmp_path: Path) -> None:
    """The job no longer holds the output (its ``commit`` refuses): the staged uploads are aborted."""
    contents = _files(tmp_path / "a", small_parts)
    moves = [(str(tmp_path / "a" / name), s3.uri(f"out/{name}")) for name in contents]

    def refuse(step: Any) -> None:
        raise RuntimeError("the job was taken over")

    published: list[str] = []
    with pytest.raises(RuntimeError):
        publish_files(moves, refuse, published)
    assert published == [] and s3.list_keys("out/") == []
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


def test_local_locations_are_renamed_in_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local move runs where the job's write checks are in force (a context of its own)."""
    contents = _files(tmp_path / "a", MIN_PART_BYTES)
    threads: set[str] = set()
    move = publishing.publish_file

    def recorded(path: str, location: str) -> None:
        threads.add(threading.current_thread().name)
        move(path, location)

    monkeypatch.setattr(publishing, "publish_file", recorded)
    publish_files([(str(tmp_path / "a" / name), str(tmp_path / "out" / name)) for name in contents])
    assert threads == {threading.current_thread().name}
    for name, data in contents.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_withdraw_removes_the_others_when_one_removal_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed run's results are all removed but the one the storage refuses, which is logged by name."""
    outputs = tmp_path / "out"
    outputs.mkdir()
    names = [str(outputs / f"part-{i}.gz") for i in range(3)]
    for name in names:
        Path(name).write_bytes(b"x")
    real_delete = publishing.delete

    def refusing(location: str) -> None:
        if location == names[0]:
            raise AccessDeniedException(f"cannot delete '{location}': AccessDenied")
        real_delete(location)

    monkeypatch.setattr(publishing, "delete", refusing)
    with caplog.at_level("WARNING", logger="emrml.storage.publishing"):
        publishing.withdraw(names)
    assert [Path(name).exists() for name in names] == [True, False, False]
    assert names[0] in caplog.text and "AccessDenied" in caplog.text
