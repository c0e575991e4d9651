"""One object written to S3 as its bytes come: a PutObject when small, else a multipart upload.

S3 takes at most ``MAX_PARTS`` parts of one upload, each at most ``MAX_PART_BYTES``. An output's size is
not known while it is written, so the part size grows with it: ``PARTS_PER_PART_SIZE`` parts of the
configured size, then as many of twice that, and so on (as ``aws s3 cp`` sizes the parts of a large file).
From S3's smallest part, 5 MiB, ten thousand parts then hold about 5 TiB, S3's largest object; from the
default 16 MiB, more. An output that would still need another part is refused before it is sent, and the
upload aborted, so no half object appears. Memory: the current part size × (parts in flight + 1), which
grows with the parts only past a thousand of them (16 GiB of output at the default part size).
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from emrml.storage.backend import Commit, commit_now
from emrml.storage.s3 import MAX_PART_BYTES, S3Error

if TYPE_CHECKING:
    from emrml.storage.s3 import S3Store

#: S3's most parts of one multipart upload.
MAX_PARTS = 10_000
#: Parts sent at one part size before the next are twice as large.
PARTS_PER_PART_SIZE = 1_000


def part_size(configured: int, parts_sent: int) -> int:
    """The size of the part after ``parts_sent``: the configured one, doubled every
    ``PARTS_PER_PART_SIZE`` parts, at most S3's largest."""
    return min(configured << (parts_sent // PARTS_PER_PART_SIZE), MAX_PART_BYTES)


class MultipartWriter(io.RawIOBase):
    """Bytes written become one object: a PutObject when small, else a multipart upload.

    Nothing is visible until ``finish``; ``abort`` drops an upload under way. ``close`` by the caller (as
    pyarrow sinks do) is harmless: the object is completed by the ``atomic_write`` block.
    """

    def __init__(self, store: S3Store, bucket: str, key: str) -> None:
        self.store, self.bucket, self.key = store, bucket, key
        self.part_bytes = store.settings.part_bytes
        self.buffer = bytearray()
        self.metadata: dict[str, str] = {}
        self.upload_id: str | None = None
        self.parts: list[Future[dict[str, Any]]] = []
        self.pool: ThreadPoolExecutor | None = None
        self.slots = threading.Semaphore(store.settings.parts_in_flight)
        self.written = 0

    def writable(self) -> bool:
        return True

    def close(self) -> None:  # the object is finished or aborted by the atomic_write block only
        pass

    @property
    def closed(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if view and len(self.parts) >= MAX_PARTS:
            raise self._too_large()  # now, rather than after buffering the rest of the output
        self.buffer += view
        self.written += len(view)
        while len(self.buffer) >= (size := self.next_part_bytes()):
            part = bytes(self.buffer[:size])
            del self.buffer[:size]
            self._send_part(part)
            if self.buffer and len(self.parts) >= MAX_PARTS:
                raise self._too_large()
        return len(view)

    def tell(self) -> int:
        return self.written

    def next_part_bytes(self) -> int:
        return part_size(self.part_bytes, len(self.parts))

    def _too_large(self) -> S3Error:
        return S3Error(
            "EntityTooLarge",
            f"the output needs more than the {MAX_PARTS:,} parts S3 takes in one upload (refused after "
            f"{self.written:,} bytes; a larger s3_part_bytes makes larger parts); nothing was written",
        )

    def _send_part(self, data: bytes) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise self._too_large()
        if self.upload_id is None:
            started = self.store.call(
                "create_multipart_upload",
                self.bucket,
                self.key,
                Metadata=self.metadata,
                **self.store.settings.write_arguments(),
            )
            self.upload_id = started["UploadId"]
            self.pool = ThreadPoolExecutor(self.store.settings.parts_in_flight, "emrml-s3-upload")
        assert self.pool is not None
        for done in [part for part in self.parts if part.done()]:
            done.result()  # an upload that failed fails the write now, not at the end
        self.slots.acquire()
        number = len(self.parts) + 1
        future = self.pool.submit(self._upload_part, number, data)
        future.add_done_callback(lambda _: self.slots.release())
        self.parts.append(future)

    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        response = self.store.call(
            "upload_part", self.bucket, self.key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def finish(self, commit: Commit = commit_now) -> None:
        """Make the object appear: one request (its only part, or the upload's completion), run through
        ``commit`` once every other part is sent."""
        try:
            if self.upload_id is None:
                body = bytes(self.buffer)
                commit(
                    lambda: self.store.call(
                        "put_object",
                        self.bucket,
                        self.key,
                        Body=body,
                        Metadata=self.metadata,
                        **self.store.settings.write_arguments(),
                    )
                )
                return
            if self.buffer or not self.parts:
                self._send_part(bytes(self.buffer))
            parts = [future.result() for future in self.parts]
            commit(
                lambda: self.store.call(
                    "complete_multipart_upload",
                    self.bucket,
                    self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": parts},
                )
            )
        except BaseException:
            self.abort()
            raise
        finally:
            self.buffer = bytearray()
            if self.pool is not None:
                self.pool.shutdown(wait=True)

    def abort(self) -> None:
        """Drop the upload: no object appears, no parts are kept (best effort: S3 lifecycle rules for
        incomplete multipart uploads catch what a lost connection leaves)."""
        self.buffer = bytearray()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.upload_id is not None:
            with suppress(OSError):
                self.store.call("abort_multipart_upload", self.bucket, self.key, UploadId=self.upload_id)
            self.upload_id = None
