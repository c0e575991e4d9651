"""The Amazon ML error types, each with the HTTP status the API answers with.

Every layer raises these; the HTTP protocol turns them into ``{"__type", "message"}`` bodies,
the CLI into one line on stderr and an exit code.
"""

from __future__ import annotations

#: The longest ``message`` the API's model allows an error (its ErrorMessage shape) and an object's
#: ``Message`` (its Message shape), in characters.
MAX_ERROR_MESSAGE = 2048
MAX_OBJECT_MESSAGE = 10240
_CUT = " [...] "


def shortened(text: str, limit: int) -> str:
    """``text``, cut in the middle to at most ``limit`` characters. Messages quote what a request or a file
    gave (a member's name, a header) between the start, which says where, and the end, which says why."""
    if len(text) <= limit:
        return text
    head = (limit - len(_CUT)) * 2 // 3
    tail = limit - len(_CUT) - head
    return text[:head] + _CUT + text[len(text) - tail :]


class AmazonMLError(Exception):
    """Base of every error a caller may see. ``type_name`` is the wire ``__type``."""

    type_name = "InternalServerException"
    http_status = 500
    #: CLI exit code: scripts can tell bad input (2) from a missing object (3) or a server fault (1).
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"__type": self.type_name, "message": shortened(self.message, MAX_ERROR_MESSAGE)}


class InvalidInputException(AmazonMLError):
    type_name = "InvalidInputException"
    http_status = 400
    exit_code = 2


class ResourceNotFoundException(AmazonMLError):
    type_name = "ResourceNotFoundException"
    http_status = 400
    exit_code = 3


class IdempotentParameterMismatchException(AmazonMLError):
    type_name = "IdempotentParameterMismatchException"
    http_status = 400
    exit_code = 4


class InvalidTagException(AmazonMLError):
    type_name = "InvalidTagException"
    http_status = 400
    exit_code = 2


class TagLimitExceededException(AmazonMLError):
    type_name = "TagLimitExceededException"
    http_status = 400
    exit_code = 2


class LimitExceededException(AmazonMLError):
    type_name = "LimitExceededException"
    http_status = 400
    exit_code = 5


class PredictorNotMountedException(AmazonMLError):
    type_name = "PredictorNotMountedException"
    http_status = 400
    exit_code = 6


class AccessDeniedException(AmazonMLError):
    """The caller may not do this: a location outside what it may read or write, an action it is not granted.

    HTTP 400 with ``__type`` AccessDeniedException, as the AWS JSON protocol answers a refused request.
    """

    type_name = "AccessDeniedException"
    http_status = 400
    exit_code = 7


class InternalServerException(AmazonMLError):
    type_name = "InternalServerException"
    http_status = 500
    exit_code = 1


class UnknownOperationException(AmazonMLError):
    """The X-Amz-Target names no operation."""

    type_name = "UnknownOperationException"
    http_status = 400
    exit_code = 2


class SerializationException(AmazonMLError):
    """The request body is not a JSON object."""

    type_name = "SerializationException"
    http_status = 400
    exit_code = 2


class RequestEntityTooLargeException(AmazonMLError):
    type_name = "RequestEntityTooLargeException"
    http_status = 413
    exit_code = 2


# Authentication errors, as AWS answers them: HTTP 403 Forbidden (a client retrying unchanged cannot succeed).
class MissingAuthenticationTokenException(AmazonMLError):
    type_name = "MissingAuthenticationTokenException"
    http_status = 403


class IncompleteSignatureException(AmazonMLError):
    type_name = "IncompleteSignatureException"
    http_status = 403


class InvalidSignatureException(AmazonMLError):
    type_name = "InvalidSignatureException"
    http_status = 403


class UnrecognizedClientException(AmazonMLError):
    type_name = "UnrecognizedClientException"
    http_status = 403


class DataError(InvalidInputException):
    """Input data that cannot be used (unreadable file, bad codec, schema/column mismatch).

    Raised inside jobs; the job runner records the message on the FAILED entity. Deterministic: reading
    the same data again fails the same way, so the Spark engine does not retry the task that raised it.
    """


class ReadError(DataError):
    """A data file whose read failed (an I/O error with an errno, not its content): reading it again may
    succeed, so the Spark engine lets Spark retry the task (``spark.task.maxFailures``)."""


ERROR_TYPES: dict[str, type[AmazonMLError]] = {
    cls.type_name: cls
    for cls in (
        InvalidInputException,
        ResourceNotFoundException,
        IdempotentParameterMismatchException,
        InvalidTagException,
        TagLimitExceededException,
        LimitExceededException,
        PredictorNotMountedException,
        AccessDeniedException,
        InternalServerException,
        UnknownOperationException,
        SerializationException,
        RequestEntityTooLargeException,
        MissingAuthenticationTokenException,
        IncompleteSignatureException,
        InvalidSignatureException,
        UnrecognizedClientException,
    )
}
