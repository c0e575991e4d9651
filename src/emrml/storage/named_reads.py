"""Errors of reading an opened S3 object, said of the request member that gave its location.

Opening an object names the member its location came from (``DataSpec.DataLocationS3 's3://…' cannot be
read: …``, ``locations.open_binary``). The reads after the opening fail on their own: the connection breaks
off for good in the middle of a large object, the object is replaced or deleted between two of its ranges,
or a client-side encrypted object's tag does not match at its end. ``NamedReader`` says those the same way,
so that a FAILED datasource names the member and the object, not a bare file or an internal error.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import Any, TypeVar

from emrml.errors import InvalidInputException, ReadError
from emrml.storage.backend import storage_error

T = TypeVar("T")


def _naming(method: Callable[..., T]) -> Callable[..., T]:
    """``method`` of ``io.BufferedReader``, its errors said by ``NamedReader._named``."""

    @functools.wraps(method)
    def named(self: NamedReader, *args: Any) -> T:
        try:
            return method(self, *args)
        except (OSError, InvalidInputException) as exc:
            error = self._named(exc)
            if error is exc:
                raise
            raise error from exc

    return named


class NamedReader(io.BufferedReader):
    """A buffered reader of ``raw`` whose read errors name the member ``what`` and ``location``: a
    ``ReadError`` (another read may succeed, so the Spark engine retries the task), an
    ``AccessDeniedException`` when the store refused a range, a client-side decryption error with the member
    added. ``io.UnsupportedOperation`` (a seek in an encrypted object) stays as it is: callers test for it."""

    def __init__(self, raw: Any, buffer_size: int, what: str, location: str) -> None:
        super().__init__(raw, buffer_size)
        self.what, self.location = what, location

    read = _naming(io.BufferedReader.read)
    read1 = _naming(io.BufferedReader.read1)
    readinto = _naming(io.BufferedReader.readinto)
    readinto1 = _naming(io.BufferedReader.readinto1)
    peek = _naming(io.BufferedReader.peek)
    readline = _naming(io.BufferedReader.readline)

    def _named(self, exc: OSError | InvalidInputException) -> BaseException:
        if isinstance(exc, io.UnsupportedOperation):
            return exc
        if not isinstance(exc, OSError):
            # Imported once an error comes: it loads cryptography.
            from emrml.storage.cse import DecryptionError

            return exc.naming(self.what, self.location) if isinstance(exc, DecryptionError) else exc
        message = f"{self.what} '{self.location}' cannot be read"
        if isinstance(exc, PermissionError):
            return storage_error(message, exc)
        return ReadError(f"{message}: {exc.strerror or exc}")
