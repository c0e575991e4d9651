"""The ``Backend`` of objects in S3 or an S3-compatible store, as ``storage.local`` holds the local one;
``storage.locations`` picks between them by a location's scheme."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from emrml.storage.backend import BUFFER_BYTES, Commit, FileRef, Folder, commit_now, visible, write_error
from emrml.storage.s3 import S3Store, split


class S3Backend:
    """Objects of S3 or an S3-compatible store (``storage.s3``); a prefix is a "directory"."""

    def __init__(self) -> None:
        self.store = S3Store()
        #: The settings the store was made from (``STORAGE_SETTINGS``), to hand to other processes.
        self.settings: dict[str, Any] = {}

    def list(self, location: str) -> list[FileRef]:
        return self.store.list(location, visible)

    def open(self, location: str) -> BinaryIO:
        return self.store.open(location, BUFFER_BYTES)

    def exists(self, location: str) -> bool:
        return self.store.exists(location)

    def delete(self, location: str) -> None:
        self.store.delete(location)

    def is_folder(self, location: str) -> bool:
        bucket, key = split(location)
        return not key or (self.store.head(bucket, key) is None and self.store.exists(location))

    def holds_no_file(self, location: str) -> bool:
        """Whether ``location`` is a prefix under which no object is a data file: nothing under a location
        ending in ``/`` (or a bucket), or hidden objects and schemas only. A key with neither an object nor
        anything under ``key/`` is a missing object instead (False). Listed up to its first data file."""
        bucket, key = split(location)
        named_prefix = not key or key.endswith("/")
        if not named_prefix:
            if self.store.head(bucket, key) is not None:
                return False
            key += "/"
        listed = False
        for entry in self.store.iter_objects(bucket, key):
            listed = True
            name = entry["Key"][len(key) :]
            if name and not name.endswith("/") and visible(name):
                return False
        return listed or named_prefix

    def list_folder(self, location: str, token: str | None, limit: int) -> Folder:
        bucket, key = split(location)
        prefix = key if not key or key.endswith("/") else key + "/"
        prefixes, objects, next_token = self.store.list_page(bucket, prefix, token, limit)
        files = [
            FileRef(
                f"s3://{bucket}/{entry['Key']}",
                entry["Key"],
                self.store.listed_size(entry),
                entry["Key"][len(prefix) :],
            )
            for entry in objects
            if entry["Key"] != prefix
        ]
        return Folder([f"s3://{bucket}/{p}" for p in prefixes], files, next_token)

    @contextmanager
    def atomic_write(self, location: str, commit: Commit = commit_now) -> Iterator[BinaryIO]:
        try:
            with self.store.atomic_write(location, commit) as stream:
                yield stream
        except OSError as exc:
            raise write_error(location, exc) from exc
