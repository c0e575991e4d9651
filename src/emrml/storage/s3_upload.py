"""One object written to S3 as its bytes come: a PutObject when small, else a multipart upload.

S3 takes at most ``MAX_PARTS`` parts of one upload, each at most ``MAX_PART_BYTES``. An output's size is
not known while it is written, so the part size grows with it: ``PARTS_PER_PART_SIZE`` parts of the
configured size, then as many of twice that, and so on (as ``aws s3 cp`` sizes the parts of a large file).
From S3's smallest part, 5 MiB, ten thousand parts then hold about 5 TiB, S3's largest object; from the
default 16 MiB, more. An output that would still need another part is refused before it is sent, and the
upload aborted, so no half object appears.

Memory: the configured part size × (parts in flight + 1), whatever the size of the output. A part larger
than the configured size (past a thousand parts: 16 GiB of output at the default part size) is gathered in
a temporary file (TMPDIR) and sent from it: held in memory, the parts in flight and the one being gathered
took 5.4 times the current part size (868 MiB at 160 MiB parts, and 27 GiB at S3's largest, 5 GiB).
"""

from __future__ import annotations

import io
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import IO, TYPE_CHECKING, Any

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
        #: The part being gathered when it is larger than the configured size; ``buffer`` is empty then.
        self.spool: IO[bytes] | None = None
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
        length = len(view)
        if view and len(self.parts) >= MAX_PARTS:
            raise self._too_large()  # now, rather than after buffering the rest of the output
        self.written += length
        while view:
            size = self.next_part_bytes()
            room = size - self._gathered()
            piece, view = view[:room], view[room:]
            if size > self.part_bytes:
                if self.spool is None:
                    # Closed once its part is sent, or dropped (``_drop_gathered``): it outlives this call.
                    self.spool = tempfile.TemporaryFile(prefix="emrml-s3-part-")  # noqa: SIM115
                self.spool.write(piece)
            else:
                self.buffer += piece
            if self._gathered() == size:
                self._send_part(self._taken())
                if view and len(self.parts) >= MAX_PARTS:
                    raise self._too_large()
        return length

    def tell(self) -> int:
        return self.written

    def next_part_bytes(self) -> int:
        return part_size(self.part_bytes, len(self.parts))

    def _gathered(self) -> int:
        """The bytes of the next part written so far."""
        return self.spool.tell() if self.spool is not None else len(self.buffer)

    def _taken(self) -> bytes | IO[bytes]:
        """The part gathered (its bytes, or its file read from the start), gathering the next from none."""
        if self.spool is not None:
            part, self.spool = self.spool, None
            part.seek(0)
            return part
        part_bytes, self.buffer = bytes(self.buffer), bytearray()
        return part_bytes

    def _too_large(self) -> S3Error:
        return S3Error(
            "EntityTooLarge",
            f"the output needs more than the {MAX_PARTS:,} parts S3 takes in one upload (refused after "
            f"{self.written:,} bytes; a larger s3_part_bytes makes larger parts); nothing was written",
        )

    def _send_part(self, data: bytes | IO[bytes]) -> None:
        if len(self.parts) >= MAX_PARTS:
            if not isinstance(data, bytes):
                data.close()
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
        # A part's file is closed once sent, or here when it never will be (the upload aborted first).
        if not isinstance(data, bytes):
            future.add_done_callback(lambda _: data.close())
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
            if self._gathered() or not self.parts:
                self._send_part(self._taken())
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
            self._drop_gathered()
            if self.pool is not None:
                self.pool.shutdown(wait=True)

    def abort(self) -> None:
        """Drop the upload: no object appears, no parts are kept (best effort: S3 lifecycle rules for
        incomplete multipart uploads catch what a lost connection leaves)."""
        self._drop_gathered()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.upload_id is not None:
            with suppress(OSError):
                self.store.call("abort_multipart_upload", self.bucket, self.key, UploadId=self.upload_id)
            self.upload_id = None

    def _drop_gathered(self) -> None:
        self.buffer = bytearray()
        if self.spool is not None:
            self.spool.close()
            self.spool = None
