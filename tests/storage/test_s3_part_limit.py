"""S3's limit of 10,000 parts to one multipart upload: the part size grows as an output does, and an
output beyond what the parts hold is refused naming the limit, with no object and no upload left behind.
The limit and the parts per part size are lowered so that the limit is reached with a few 5 MiB parts."""

from __future__ import annotations

import dataclasses
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.storage import locations, s3_upload
from emrml.storage.s3 import MAX_PART_BYTES, MIN_PART_BYTES, S3Settings, S3Store
from emrml.storage.s3_upload import MAX_PARTS, part_size
from s3_server import S3

MIB = 1 << 20


def test_the_real_limits_hold_s3s_largest_object_at_the_default_part_size() -> None:
    assert MAX_PARTS == 10_000 and MAX_PART_BYTES == 5 << 30
    sizes = [part_size(16 * MIB, n) for n in range(MAX_PARTS)]
    assert sizes[0] == sizes[999] == 16 * MIB and sizes[1000] == 32 * MIB
    assert max(sizes) == MAX_PART_BYTES
    assert sum(sizes) >= 5 << 40  # S3's largest object, 5 TiB


def test_a_part_size_setting_beyond_s3s_parts_is_taken_as_the_nearest_s3_takes(tmp_path: Path) -> None:
    """A part size over 5 GiB made every object smaller than it one PutObject, which S3 refuses over 5 GiB,
    after holding it whole in memory."""

    def part_bytes(setting: int) -> int:
        settings = Settings.load(environ={}, home=tmp_path, s3_part_bytes=setting)
        return S3Settings.from_settings(settings).part_bytes

    assert part_bytes(8 << 30) == MAX_PART_BYTES == 5 << 30
    assert part_bytes(1 << 20) == MIN_PART_BYTES and part_bytes(64 * MIB) == 64 * MIB


@pytest.fixture
def few_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four parts to an upload, the part size doubling after two: 5 + 5 + 10 + 10 MiB at most."""
    monkeypatch.setattr(s3_upload, "MAX_PARTS", 4)
    monkeypatch.setattr(s3_upload, "PARTS_PER_PART_SIZE", 2)


def write(location: str, size: int) -> bytes:
    data = os.urandom(size)
    with locations.atomic_write(location) as stream:
        for start in range(0, size, MIB):
            stream.write(data[start : start + MIB])
    return data


def uploads(s3: S3) -> list[object]:
    return list(s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []))


def test_parts_grow_so_that_an_output_fits_the_part_limit(s3: S3, few_parts: None) -> None:
    locations.configure(dataclasses.replace(s3.settings, s3_part_bytes=MIN_PART_BYTES))
    data = write(s3.uri("grown.bin"), 26 * MIB)  # 5 + 5 + 10 + 6: at a fixed 5 MiB, six parts
    assert s3.get("grown.bin") == data
    assert s3.client.head_object(Bucket=s3.bucket, Key="grown.bin")["ETag"].endswith('-4"')
    third = s3.client.head_object(Bucket=s3.bucket, Key="grown.bin", PartNumber=3)
    assert third["ContentLength"] == 10 * MIB


def test_an_output_beyond_the_part_limit_is_refused_and_leaves_nothing(s3: S3, few_parts: None) -> None:
    locations.configure(dataclasses.replace(s3.settings, s3_part_bytes=MIN_PART_BYTES))
    s3.put("kept.bin", b"the previous output")
    with pytest.raises(InvalidInputException) as caught:
        write(s3.uri("kept.bin"), 31 * MIB)
    message = caught.value.message
    assert f"cannot write '{s3.uri('kept.bin')}': EntityTooLarge" in message
    assert "more than the 4 parts S3 takes in one upload" in message and "s3_part_bytes" in message
    assert s3.get("kept.bin") == b"the previous output" and not uploads(s3)


def test_an_encrypted_output_whose_tag_overflows_the_last_part_is_aborted(
    s3: S3, few_parts: None, tmp_path: Path
) -> None:
    """Client-side encryption writes its tag as the block ends, after the data filled every part."""
    key = tmp_path / "aes.key"
    key.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    locations.configure(
        dataclasses.replace(s3.settings, s3_part_bytes=MIN_PART_BYTES, s3_cse_key=f"aes:{key}")
    )
    with pytest.raises(InvalidInputException, match="EntityTooLarge"):
        write(s3.uri("sealed.bin"), 30 * MIB)
    assert "sealed.bin" not in s3.list_keys() and not uploads(s3)


def test_a_store_without_client_side_encryption_fills_the_last_part_exactly(s3: S3, few_parts: None) -> None:
    store = S3Store(S3Settings(endpoint_url=s3.endpoint_url, part_bytes=MIN_PART_BYTES, parts_in_flight=2))
    data = os.urandom(30 * MIB)
    with store.atomic_write(s3.uri("full.bin")) as stream:
        stream.write(data)
    assert s3.get("full.bin") == data and not uploads(s3)
    assert s3.client.head_object(Bucket=s3.bucket, Key="full.bin")["ETag"].endswith('-4"')


class _CountingStore:
    """An S3 store that takes every part and keeps none of it: what a writer holds is its own."""

    def __init__(self, part_bytes: int) -> None:
        self.settings = S3Settings(part_bytes=part_bytes, parts_in_flight=4)
        self.sizes: dict[int, int] = {}  # by part number

    def call(self, operation: str, bucket: str, key: str = "", **arguments: Any) -> dict[str, object]:
        if operation == "upload_part":
            body, number = arguments["Body"], arguments["PartNumber"]
            if isinstance(body, bytes):
                self.sizes[number] = len(body)
            else:
                self.sizes[number] = sum(len(piece) for piece in iter(lambda: body.read(MIB), b""))
            return {"ETag": f'"{number}"'}
        return {"UploadId": "u"} if operation == "create_multipart_upload" else {}


def test_memory_stays_bounded_by_the_configured_part_size_as_parts_grow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past a thousand parts each part is larger than the configured size: held in memory, the parts in
    flight and the one being gathered took about 5.4 times the current part size (868 MiB at 160 MiB
    parts, 27 GiB at S3's 5 GiB), however small the configured one."""
    monkeypatch.setattr(s3_upload, "PARTS_PER_PART_SIZE", 2)
    store = _CountingStore(part_bytes=MIB)
    writer = s3_upload.MultipartWriter(store, "bucket", "big.bin")  # type: ignore[arg-type]
    chunk = os.urandom(MIB // 4)
    total = sum(part_size(MIB, n) for n in range(10))  # 1, 1, 2, 2, 4, 4, 8, 8, 16 and 16 MiB
    tracemalloc.start()
    try:
        for _ in range(total // len(chunk)):
            writer.write(chunk)
        writer.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert store.sizes == {n + 1: part_size(MIB, n) for n in range(10)}
    # The configured part size × (parts in flight + 1), and a copy being made: 16 MiB parts took 48 MiB.
    assert peak < 8 * MIB, peak
