"""Stream scoring: consumers that score every record of a Kinesis stream (docs/streams.md).

``kinesis`` the client with back-off · ``leases`` shard leases and checkpoints in the metastore ·
``scoring`` micro-batches through batch prediction's featurizer and model · ``outputs`` Kinesis and file
sinks · ``consumer`` the loop of one consumer process (``python -m emrml.stream STREAM_ID``).
"""

from __future__ import annotations

from emrml.errors import InvalidInputException

#: How records are read: JSON objects or CSV lines, or each by its first character (``stream.scoring``).
FORMATS = ("auto", "json", "csv")
SCHEME = "kinesis://"


def stream_name(uri: str, member: str) -> str:
    """The stream name of a ``kinesis://NAME`` URI (InvalidInputException naming ``member`` otherwise)."""
    name = uri[len(SCHEME) :] if uri.startswith(SCHEME) else ""
    if not (1 <= len(name) <= 128) or not all(c.isalnum() or c in "_.-" for c in name):
        raise InvalidInputException(
            f"{member} '{uri}' must be kinesis://NAME, NAME of 1-128 letters, digits, '_', '.' or '-'"
        )
    return name
