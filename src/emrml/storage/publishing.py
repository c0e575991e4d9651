"""Moving many local files to their locations at once, the way a batch prediction publishes its results.

``publish_files`` moves each file as ``locations.publish_file`` would, but in two phases, so that the
round trips overlap and the files appear together:

1. **Staged.** A file of at least a part (``S3Settings.part_bytes``) bound for S3 is sent by multipart
   upload, all but the request that completes it: one file after another, each with its parts in flight
   (memory as one upload's). Nothing is visible yet.
2. **Appeared.** One ``commit`` step then makes every file appear: the staged uploads' completions and a
   PutObject for each smaller file, ``PUBLISH_AT_ONCE`` requests at a time on threads; a rename (or copy)
   for each local location, in the calling thread (a request's write checks are its context's, which a
   pool's threads would not see; a rename costs no round trip).

A failure before that step leaves nothing at the locations (the staged uploads are aborted); one within it
leaves the files that appeared, which ``published`` lists for the caller to remove, and aborts the rest.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

from emrml.errors import AmazonMLError, InvalidInputException
from emrml.storage.backend import BUFFER_BYTES, Commit, commit_now, write_error
from emrml.storage.locations import _S3, delete, publish_file
from emrml.storage.s3 import split
from emrml.storage.s3_upload import MultipartWriter

log = logging.getLogger(__name__)

#: S3 requests of the appearing step sent at once. A PutObject of a file smaller than a part holds it in
#: memory (twice, at most, while its body is built), so this bounds that step's memory to a few parts.
PUBLISH_AT_ONCE = 4


@dataclass
class _Staged:
    """A file on its way to ``location``: a multipart upload sent but for its completion (``complete``),
    or (both None) a file moved whole when it is made to appear."""

    path: str
    location: str
    upload: MultipartWriter | None = None
    complete: Callable[[], None] | None = None


def publish_files(
    moves: Sequence[tuple[str, str]], commit: Commit = commit_now, published: list[str] | None = None
) -> None:
    """Move each local file ``path`` of ``moves`` to its ``location``, the locations appearing in one
    ``commit`` step (module doc). ``published`` gets the locations that appeared, in the order of
    ``moves``, whether or not the step ended well, then those whose S3 request failed: a request may
    fail after S3 carried it out (its answer lost), and removing an object that is not there does no
    harm. Errors name the location, as ``publish_file``'s."""
    if not moves:
        return
    staged: list[_Staged] = []
    try:
        for path, location in moves:
            staged.append(_stage(path, location))
    except BaseException:
        _abort(staged)
        raise
    appeared: set[int] = set()
    failed: set[int] = set()
    try:
        commit(lambda: _appear(staged, appeared, failed))
    except BaseException:
        _abort([entry for k, entry in enumerate(staged) if k not in appeared])
        raise
    finally:
        if published is not None:
            published.extend(staged[k].location for k in [*sorted(appeared), *sorted(failed)])


def _stage(path: str, location: str) -> _Staged:
    store = _S3.store
    if not location.startswith("s3://") or os.path.getsize(path) < store.settings.part_bytes:
        return _Staged(path, location)
    from emrml.storage.cse import encrypting

    bucket, key = split(location)
    upload = MultipartWriter(store, bucket, key)
    completion: list[Callable[[], None]] = []
    try:
        with open(path, "rb") as source, encrypting(upload, store.settings.cse, location) as stream:
            shutil.copyfileobj(source, stream, BUFFER_BYTES)
        # Sends what remains and waits for every part; the request that completes the upload is kept.
        upload.finish(completion.append)
    except BaseException as exc:
        upload.abort()
        if isinstance(exc, OSError):
            raise write_error(location, exc) from exc
        raise
    return _Staged(path, location, upload, completion[0])


def _appear(staged: list[_Staged], appeared: set[int], failed: set[int]) -> None:
    """Make every staged file appear, adding its index to ``appeared`` as it does (to ``failed`` when its
    S3 request fails); raises the first failure (in the files' order) once the requests under way ended."""
    lock = threading.Lock()

    def make_appear(k: int) -> None:
        try:
            _make_appear(staged[k])
        except BaseException:
            if staged[k].location.startswith("s3://"):
                with lock:
                    failed.add(k)
            raise
        with lock:
            appeared.add(k)

    pool = ThreadPoolExecutor(PUBLISH_AT_ONCE, thread_name_prefix="emrml-publish")
    futures: list[Future[None]] = []
    try:
        futures = [
            pool.submit(make_appear, k) for k, e in enumerate(staged) if e.location.startswith("s3://")
        ]
        for k, entry in enumerate(staged):
            if not entry.location.startswith("s3://"):
                make_appear(k)
        for future in futures:
            future.result()
    finally:
        # On a failure, what has not started does not; what has is waited for (``appeared`` then lists it).
        pool.shutdown(wait=True, cancel_futures=True)


def _make_appear(entry: _Staged) -> None:
    if entry.complete is None:
        publish_file(entry.path, entry.location)  # within the caller's commit step
        return
    try:
        entry.complete()
    except OSError as exc:
        raise write_error(entry.location, exc) from exc
    with suppress(OSError):
        os.unlink(entry.path)


def _abort(staged: list[_Staged]) -> None:
    """Drop the staged uploads (best effort: ``MultipartWriter.abort``)."""
    for entry in staged:
        if entry.upload is not None:
            entry.upload.abort()


def withdraw(published: Sequence[str], commit: Commit = commit_now) -> None:
    """Remove the files a run published (``publish_files``' ``published``) before it failed or was
    stopped, unless its attempt no longer holds the job (``commit`` refuses): the names are every
    attempt's, and they are then the next attempt's output, or removed with the job deleted or given up.
    One ``commit`` each, as they were published: the job is held for one request at a time. A removal the
    storage refuses (``AccessDenied``, say) does not stop the others; what is left is logged by name."""
    left: list[str] = []

    def remove(location: str) -> None:
        try:
            delete(location)
        except InvalidInputException:  # not there: nothing to remove
            pass
        except AmazonMLError as exc:
            left.append(f"{location} ({exc.message})")

    for location in published:
        try:
            commit(functools.partial(remove, location))
        except BaseException:  # what ended the run is raised again by the caller; a refusal ends this
            break
    if left:
        log.warning("results of a failed run could not be removed: %s", "; ".join(left))
