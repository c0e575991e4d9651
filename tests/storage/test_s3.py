"""s3:// locations against a real S3 API (moto's server on loopback): listing, streaming reads, atomic
writes, multipart uploads, and S3's errors in the user's messages."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from emrml.errors import AccessDeniedException, InvalidInputException, ReadError
from emrml.storage import locations
from emrml.storage.locations import (
    FileRef,
    atomic_write,
    copy,
    delete,
    exists,
    list_files,
    list_folder,
    open_binary,
    publish_file,
    read_text,
    schema_location_for,
)
from emrml.storage.s3 import S3Settings, S3Store
from s3_server import S3


def test_a_prefix_lists_every_visible_object_below_it(s3: S3) -> None:
    for key in [
        "in/z.csv",
        "in/a/b.csv",
        "in/a.csv",
        "in/a/.hidden.csv",
        "in/.staging/part-0.csv",
        "in/part.csv.schema",
        "in/.schema",
        "in/deep/er/x.csv.gz",
        "in/folder/",
        "inside.csv",
    ]:
        s3.put(key, "a,b\n")
    expected = ["in/a.csv", "in/a/b.csv", "in/deep/er/x.csv.gz", "in/z.csv"]
    for location in (s3.uri("in"), s3.uri("in/")):
        files = list_files(location)
        assert [ref.key for ref in files] == expected
        assert files[1] == FileRef(uri=s3.uri("in/a/b.csv"), key="in/a/b.csv", size=4, name="a/b.csv")
    assert list_files(s3.uri("in/a.csv")) == [FileRef(uri=s3.uri("in/a.csv"), key="in/a.csv", size=4)]
    assert exists(s3.uri("in")) and exists(s3.uri("in/")) and exists(s3.uri("in/a.csv"))
    assert not exists(s3.uri("nothing")) and not exists(s3.uri("in/a.csv/"))
    assert schema_location_for(s3.uri("in/a.csv")) == s3.uri("in/a.csv.schema")
    assert schema_location_for(s3.uri("in")) == s3.uri("in/.schema")


def test_listing_follows_pages_beyond_1000_keys(s3: S3) -> None:
    keys = [f"many/part-{i:05d}.csv" for i in range(1203)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put(key, "x\n"), keys))
    assert [ref.key for ref in list_files(s3.uri("many/"))] == keys


def test_reads_stream_ranges_from_any_position(s3: S3) -> None:
    data = os.urandom(3 << 20)
    location = s3.put("blob.bin", data)
    with open_binary(location) as stream:
        assert stream.read(10) == data[:10]
        stream.seek(2_000_000)
        assert stream.tell() == 2_000_000
        assert stream.read(5) == data[2_000_000:2_000_005]
        stream.seek(-7, os.SEEK_END)
        assert stream.read() == data[-7:]
        stream.seek(0)
        assert stream.read() == data
    assert read_text(s3.put("schema.json", '\ufeff{"é": 1}'.encode())) == '{"é": 1}'


def test_a_body_that_breaks_off_is_resumed_where_it_stopped(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ReadTimeoutError

    data = os.urandom(1 << 20)
    location = s3.put("flaky.bin", data)
    store: S3Store = locations._S3.store
    original = store.call
    ranges: list[str] = []

    class Breaking:
        """A body that delivers 1,000 bytes and then times out, as a dropped connection does."""

        def __init__(self, body: Any) -> None:
            self.body, self.sent = body, 0

        def read(self, amount: int) -> bytes:
            if self.sent >= 1000:
                raise ReadTimeoutError(endpoint_url="test")
            chunk = self.body.read(min(amount, 1000 - self.sent))
            self.sent += len(chunk)
            return chunk

        def close(self) -> None:
            self.body.close()

    def flaky(operation: str, *args: Any, **kwargs: Any) -> Any:
        response = original(operation, *args, **kwargs)
        if operation == "get_object":
            ranges.append(kwargs.get("Range", "the object"))  # the opening GET asks for all of it
            if len(ranges) <= 2:
                response["Body"] = Breaking(response["Body"])
        return response

    monkeypatch.setattr(store, "call", flaky)
    with open_binary(location) as stream:
        assert stream.read() == data
    assert ranges == ["the object", "bytes=1000-", "bytes=2000-"]


def test_an_object_replaced_while_read_fails_the_read(s3: S3) -> None:
    location = s3.put("changing.bin", os.urandom(3 << 20))
    with open_binary(location) as stream:
        stream.read(10)
        s3.put("changing.bin", b"other")
        stream.seek(2 << 20)  # a new range: pinned to the first version's ETag
        with pytest.raises(OSError, match="PreconditionFailed"):
            stream.read(10)


def test_small_writes_are_one_put_and_appear_only_when_complete(s3: S3) -> None:
    location = s3.uri("out/result.csv")
    with atomic_write(location) as stream:
        stream.write(b"first\n")
        assert not exists(location)
        stream.write(b"second\n")
    assert s3.get("out/result.csv") == b"first\nsecond\n"
    with pytest.raises(RuntimeError), atomic_write(location) as stream:
        stream.write(b"half")
        raise RuntimeError("the writer failed")
    assert s3.get("out/result.csv") == b"first\nsecond\n"


def test_large_writes_are_multipart_and_a_failure_leaves_no_parts(s3: S3) -> None:
    store = S3Store(S3Settings(endpoint_url=s3.endpoint_url, part_bytes=5 << 20, parts_in_flight=2))
    data = os.urandom(12 << 20)
    with store.atomic_write(s3.uri("big.bin")) as stream:
        for start in range(0, len(data), 1 << 20):
            stream.write(data[start : start + (1 << 20)])
    assert s3.get("big.bin") == data
    assert s3.client.head_object(Bucket=s3.bucket, Key="big.bin")["ETag"].endswith('-3"')  # three parts
    with pytest.raises(RuntimeError), store.atomic_write(s3.uri("broken.bin")) as stream:
        stream.write(data)
        raise RuntimeError("the job failed")
    assert "broken.bin" not in s3.list_keys()
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


def test_publish_and_delete(s3: S3, tmp_path: Any) -> None:
    local = tmp_path / "result.gz"
    local.write_bytes(b"\x1f\x8b payload")
    publish_file(str(local), s3.uri("results/result.gz"))
    assert s3.get("results/result.gz") == b"\x1f\x8b payload" and not local.exists()
    delete(s3.uri("results/result.gz"))
    delete(s3.uri("results/result.gz"))  # already gone: not an error
    assert s3.list_keys("results/") == []


def test_s3_errors_carry_the_error_code(s3: S3) -> None:
    with pytest.raises(InvalidInputException) as caught:
        list_files("s3://emrml-no-such-bucket-here/data.csv")
    assert "NoSuchBucket" in caught.value.message
    assert "s3://emrml-no-such-bucket-here/data.csv" in caught.value.message
    missing = r"^DataSpec\.DataLocationS3 's3://.*/missing.csv' does not exist$"
    with pytest.raises(InvalidInputException, match=missing):
        list_files(s3.uri("missing.csv"))
    s3.put("secret/data.csv", "a\n1\n")
    s3.deny("s3:*", f"arn:aws:s3:::{s3.bucket}*")
    # S3's refusals are access errors, as emrml's own are (the CLI exits 7 on them).
    for call in (list_files, open_binary, read_text):
        with pytest.raises(AccessDeniedException, match="AccessDenied"):
            call(s3.uri("secret/data.csv"))  # type: ignore[operator]
    with (
        pytest.raises(AccessDeniedException, match=r"cannot write 's3://.*/out.csv': AccessDenied"),
        atomic_write(s3.uri("out.csv")) as stream,
    ):
        stream.write(b"x")


def test_an_unreachable_endpoint_is_named(s3: S3) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3Store(S3Settings(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1))
    with pytest.raises(OSError, match=f"EndpointConnectionError.*127.0.0.1:{port}"):
        store.exists(s3.uri("x"))


def test_a_read_that_keeps_breaking_off_names_the_object_once(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every try of a range broke off: after the last, the error names the object once, in the member's
    message, or as the file of a read that names no member."""
    from botocore.exceptions import ReadTimeoutError

    from emrml.storage import s3 as s3_module

    location = s3.put("broken.bin", os.urandom(1 << 20))
    store: S3Store = locations._S3.store
    original = store.call

    class Broken:
        def __init__(self, body: Any) -> None:
            self.body = body

        def read(self, amount: int) -> bytes:
            raise ReadTimeoutError(endpoint_url=f"{s3.endpoint_url}/{s3.bucket}/broken.bin")

        def close(self) -> None:
            self.body.close()

    def breaking(operation: str, *args: Any, **kwargs: Any) -> Any:
        response = original(operation, *args, **kwargs)
        if operation == "get_object":
            response["Body"] = Broken(response["Body"])
        return response

    monkeypatch.setattr(store, "call", breaking)
    monkeypatch.setattr(s3_module, "time", SimpleNamespace(sleep=lambda seconds: None))
    reason = (
        "ReadInterrupted: reading failed 5 times in a row "
        "(the connection broke off, timed out or ended early)"
    )
    with open_binary(location, what="DataSpec.DataLocationS3") as stream, pytest.raises(ReadError) as named:
        stream.read()
    assert named.value.message == f"DataSpec.DataLocationS3 '{location}' cannot be read: {reason}"
    with open_binary(location) as stream, pytest.raises(OSError) as bare:
        stream.read()
    assert str(bare.value) == f"[Errno 5] {reason}: '{location}'"


def test_an_endpoint_that_cannot_be_reached_names_the_object_once(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's message names the request's URL, the bucket and key after the endpoint: cut to the
    endpoint, since the error names the object already."""
    import socket

    location = s3.put("far.csv", "a\n1\n")
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    store: S3Store = locations._S3.store
    monkeypatch.setattr(store, "settings", S3Settings(endpoint_url=endpoint, max_attempts=1))
    monkeypatch.setattr(store, "_client", None)
    reason = f'EndpointConnectionError: Could not connect to the endpoint URL: "{endpoint}"'
    with pytest.raises(InvalidInputException) as named:
        open_binary(location, what="DataSpec.DataLocationS3")
    assert named.value.message == f"DataSpec.DataLocationS3 '{location}' cannot be read: {reason}"
    with pytest.raises(OSError) as bare:
        store.head(s3.bucket, "far.csv")
    assert str(bare.value) == f"[Errno 5] {reason}: '{location}'"


@pytest.mark.parametrize("location", ["s3://", "s3:///key", "s3://bucket/key\n"])
def test_invalid_s3_uris(location: str) -> None:
    with pytest.raises(InvalidInputException, match="is not a valid S3 location"):
        list_files(location)


def test_list_folder_pages_sub_prefixes_and_objects(s3: S3, tmp_path: Any) -> None:
    for key in ["top/a.csv", "top/b/c.csv", "top/b/d.csv", "top/.hidden", "top/z/e.csv"]:
        s3.put(key, "x\n")
    page = list_folder(s3.uri("top"), limit=2)
    entries = [*page.folders, *(ref.uri for ref in page.files)]
    assert page.next_token is not None and len(entries) == 2
    rest = list_folder(s3.uri("top/"), token=page.next_token, limit=10)
    assert rest.next_token is None
    assert sorted([*entries, *rest.folders, *(ref.uri for ref in rest.files)]) == sorted(
        [s3.uri("top/.hidden"), s3.uri("top/a.csv"), s3.uri("top/b/"), s3.uri("top/z/")]
    )
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "f.csv").write_text("x\n")
    listed = list_folder(str(local))
    assert listed.folders == [f"{local}/sub/"] and [ref.name for ref in listed.files] == ["f.csv"]


def test_copy_between_local_files_and_s3(s3: S3, tmp_path: Any) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(b"a,b\n1,2\n")
    copy(str(source), s3.uri("copied/data.csv"))
    copy(s3.uri("copied/data.csv"), s3.uri("copied/again.csv"))  # server-side
    copy(s3.uri("copied/again.csv"), str(tmp_path / "back" / "data.csv"))
    assert (tmp_path / "back" / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert s3.get("copied/again.csv") == b"a,b\n1,2\n"
    with pytest.raises(InvalidInputException, match=r"NoSuchKey|does not exist"):
        copy(s3.uri("copied/none.csv"), s3.uri("copied/x.csv"))


def test_a_datasource_reads_each_object_once(s3: S3, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # The header is checked from the opening that reads the records: one GET per object, not two.
    from emrml.config import Settings
    from emrml.core.schema import parse_schema
    from emrml.engine.local import build_datasource
    from emrml.errors import DataError

    rows = "a,b\n" + "".join(f"{i},x{i % 3}\n" for i in range(500))
    s3.put("ds/one.csv", rows)
    s3.put("ds/two.csv", rows)
    schema = parse_schema(
        json.dumps(
            {
                "version": "1.0",
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [
                    {"attributeName": "a", "attributeType": "NUMERIC"},
                    {"attributeName": "b", "attributeType": "CATEGORICAL"},
                ],
            }
        )
    )
    store: S3Store = locations._S3.store
    original = store.call
    gets: list[str] = []

    def counting(operation: str, *args: Any, **kwargs: Any) -> Any:
        if operation == "get_object":
            gets.append(args[1])
        return original(operation, *args, **kwargs)

    monkeypatch.setattr(store, "call", counting)
    settings = Settings.load(environ={}, home=tmp_path)
    summary = build_datasource(
        s3.uri("ds/"), schema, None, compute_statistics=True, settings=settings, progress=lambda *_: None
    )
    assert summary.total_records == 1000 and summary.statistics is not None
    assert sorted(gets) == ["ds/one.csv", "ds/two.csv"]
    s3.put("ds/three.csv", "a,c\n1,x\n")
    with pytest.raises(DataError, match=r"three\.csv"):
        build_datasource(
            s3.uri("ds/"), schema, None, compute_statistics=True, settings=settings, progress=lambda *_: None
        )


@pytest.mark.parametrize("name", ["s3_endpoint_url", "kms_endpoint_url"])
def test_an_endpoint_that_is_not_a_url_is_named(name: str, tmp_path: Any) -> None:
    # Every read of S3 failed with "cannot be read: ValueError: Invalid endpoint: minio:9000", naming
    # neither the setting nor what it should be.
    from emrml.config import Settings

    environment = {f"EMRML_{name.upper()}": "minio:9000"}
    with pytest.raises(InvalidInputException, match=f"setting {name} must be an http:// or https:// URL"):
        Settings.load(environ=environment, home=tmp_path)
    assert getattr(
        Settings.load(environ={f"EMRML_{name.upper()}": "https://s3.example:9000/"}, home=tmp_path), name
    )


def test_an_object_replaced_or_removed_after_its_listing_fails_the_check(s3: S3) -> None:
    # A job reads an object in several GETs (byte ranges read apart, training passes), each of one version:
    # replaced between them, its records came from two versions, and check_unchanged called an S3 object
    # unchanged whatever happened to it.
    from emrml.errors import DataError
    from emrml.storage.locations import check_unchanged

    for name in ("a.csv", "b.csv", "c.csv"):
        s3.put(f"data/{name}", "x\n1\n")
    s3.put("database.csv", "x\n1\n")  # beside the prefix, outside the listing: not compared
    files = list_files(s3.uri("data/"))
    single = list_files(s3.uri("data/b.csv"))
    assert all(file.etag for file in files + single)
    check_unchanged(files)
    check_unchanged(single)
    s3.put("data/b.csv", "x\n2\n")  # the same size: only its version tells
    s3.put("database.csv", "y\n")
    for listed in (files, single):
        with pytest.raises(
            DataError, match=r"object s3://.*/data/b\.csv was replaced while it was being read"
        ):
            check_unchanged(listed)
    s3.client.delete_object(Bucket=s3.bucket, Key="data/c.csv")
    with pytest.raises(DataError, match=r"object s3://.*/data/c\.csv was removed while it was being read"):
        check_unchanged([files[0], files[2]])
    check_unchanged(list_files(s3.uri("data/")))


def test_a_datasource_over_objects_one_replaced_while_read_fails_naming_it(
    s3: S3, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emrml.config import Settings
    from emrml.core.schema import parse_schema
    from emrml.engine import local
    from emrml.errors import DataError

    for name in ("a", "b", "c"):
        s3.put(f"ds/{name}.csv", "x\n" + "".join(f"{i}\n" for i in range(2000)))
    schema = parse_schema(
        json.dumps(
            {
                "version": "1.0",
                "dataFileContainsHeader": True,
                "attributes": [{"attributeName": "x", "attributeType": "NUMERIC"}],
            }
        )
    )
    replaced = threading.Event()

    def progress(_fraction: float, _message: str | None) -> None:
        if not replaced.is_set():  # once the first object has been read, the last is replaced
            s3.put("ds/c.csv", "x\n" + "".join(f"{i + 5000}\n" for i in range(2000)))
            replaced.set()

    # Progress is reported on a thread of its own (``reported_aside``): on a loaded machine the reader
    # checked its objects, and finished, before that thread had replaced one ("DID NOT RAISE DataError").
    # The check waits for the replacement: the objects are still the job's to read until then.
    check_unchanged = local.check_unchanged

    def replaced_first(files: list[FileRef]) -> None:
        assert replaced.wait(60), "no progress was reported"
        check_unchanged(files)

    monkeypatch.setattr(local, "check_unchanged", replaced_first)
    settings = Settings.load(environ={}, home=tmp_path)
    with pytest.raises(DataError, match=r"object s3://.*/ds/c\.csv was replaced while it was being read"):
        local.build_datasource(
            s3.uri("ds/"), schema, None, compute_statistics=True, settings=settings, progress=progress
        )


class _Refused(BaseException):
    """What a job's commit raises once its attempt no longer holds the job (``JobStopped``)."""


def _refuse(step: Any) -> None:
    raise _Refused


def test_a_refused_commit_makes_no_object_appear_and_leaves_no_upload(s3: S3, tmp_path: Any) -> None:
    """The request that makes an object appear (a PUT, or the completion of a multipart upload) runs
    through the writer's ``commit``: refused, nothing appears, not even over an object there already, and
    no multipart upload is left behind; allowed, it runs once, after every other part is sent."""
    store = S3Store(S3Settings(endpoint_url=s3.endpoint_url, part_bytes=5 << 20))
    s3.put("kept.bin", b"the next attempt's")
    data = os.urandom(11 << 20)
    for key, body in (("kept.bin", b"small"), ("big.bin", data)):
        with pytest.raises(_Refused), store.atomic_write(s3.uri(key), _refuse) as stream:
            stream.write(body)
    assert s3.list_keys() == ["kept.bin"] and s3.get("kept.bin") == b"the next attempt's"
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")
    steps: list[str] = []

    def allow(step: Any) -> None:
        steps.append("commit")
        step()

    local = tmp_path / "result.gz"
    local.write_bytes(data)
    publish_file(str(local), s3.uri("big.bin"), allow)
    assert steps == ["commit"] and s3.get("big.bin") == data and not local.exists()


def test_a_prefix_holding_an_object_whose_key_holds_a_control_character_is_refused_naming_it(s3: S3) -> None:
    """A location naming such a key is refused (``storage.s3_names``); one listed below a prefix was read,
    its results written under the same name, and its line break split the lines of logs and manifests."""
    s3.put("in/a.csv", "a,b\n")
    s3.put("in/b\r.csv", "a,b\n")
    with pytest.raises(InvalidInputException) as refused:
        list_files(s3.uri("in/"))
    assert refused.value.message == (
        f"DataSpec.DataLocationS3 '{s3.uri('in/')}' holds the object '{s3.uri('in/b')}\\x0d.csv', whose key "
        "holds the control character U+000D: copy it to a key without one"
    )
