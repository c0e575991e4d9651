"""S3 keys with ``.`` or ``..`` segments: S3 keeps ``data/../secret.csv`` as a key of its own, and a policy
matches it as written, while HTTP clients, proxies and S3-compatible stores may read it as ``secret.csv``.
Every location member refuses such a key as invalid input, whichever door the request came through."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.service.app import EmrML

DOTTED = [
    "s3://bucket/data/../secret.csv",
    "s3://bucket/./data/x.csv",
    "s3://bucket/data/..",
    "s3://bucket/.",
]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[EmrML]:
    application = EmrML(Settings.load(environ={}, home=tmp_path / "home"))
    yield application
    application.close()


def _requests(location: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(operation, member, request) naming ``location`` in each location member."""
    schema = '{"attributes": [{"attributeName": "a", "attributeType": "NUMERIC"}]}'
    return [
        (
            "CreateDataSourceFromS3",
            "DataLocationS3",
            {"DataSourceId": "ds-x", "DataSpec": {"DataLocationS3": location, "DataSchema": schema}},
        ),
        (
            "CreateDataSourceFromS3",
            "DataSchemaLocationS3",
            {
                "DataSourceId": "ds-x",
                "DataSpec": {"DataLocationS3": "s3://bucket/data/x.csv", "DataSchemaLocationS3": location},
            },
        ),
        (
            "CreateMLModel",
            "RecipeUri",
            {
                "MLModelId": "ml-x",
                "MLModelType": "BINARY",
                "TrainingDataSourceId": "ds-x",
                "RecipeUri": location,
            },
        ),
        (
            "CreateBatchPrediction",
            "OutputUri",
            {
                "BatchPredictionId": "bp-x",
                "MLModelId": "ml-x",
                "BatchPredictionDataSourceId": "ds-x",
                "OutputUri": location,
            },
        ),
    ]


@pytest.mark.parametrize("location", DOTTED)
def test_a_dotted_s3_key_is_invalid_input_naming_the_member(app: EmrML, location: str) -> None:
    for operation, member, request in _requests(location):
        with pytest.raises(InvalidInputException) as raised:
            app.call(operation, request)
        message = raised.value.message
        assert member in message.split(":", 1)[0] and location in message, (operation, member, message)
        # OutputUri had its own rule (Amazon ML's: no '/./' or '/../'); the other members now have one too.
        assert re.search(r"'/?\.\.?/?'", message), message


def test_a_user_granted_a_prefix_cannot_step_out_of_it_by_dots(app: EmrML) -> None:
    """A grant of ``s3://bucket/data/*`` matched ``s3://bucket/data/../secret.csv`` as written."""
    access = app.access
    access.create_user("dora")
    access.create_group("readers")
    access.add_member("readers", "dora")
    access.add_statement(
        "readers", {"Effect": "Allow", "Action": ["storage:Read"], "Resource": ["s3://bucket/data/*"]}
    )
    caller = f"arn:aws:iam::{app.settings.account_id}:user/dora"
    request = {
        "DataSourceId": "ds-secret",
        "DataSpec": {"DataLocationS3": "s3://bucket/data/../secret.csv", "DataSchema": "{}"},
    }
    with pytest.raises(InvalidInputException, match=r"DataLocationS3: .*has a '\.\.' segment"):
        app.call("CreateDataSourceFromS3", request, caller=caller)


def test_dots_inside_a_key_segment_are_an_ordinary_name(app: EmrML) -> None:
    """Only a whole ``.`` or ``..`` segment is refused: ``v1..2/x.csv`` and ``.hidden`` are names."""
    from emrml.storage.locations import check_syntax

    for location in (
        "s3://bucket/v1..2/x.csv",
        "s3://bucket/.hidden/x.csv",
        "s3://bucket/a/...",
        "s3://b.c/x",
    ):
        check_syntax(location)


@pytest.mark.parametrize(
    ("bucket", "rule"),
    [
        ("..", "has 2 characters, and a bucket name has 3 to 63"),
        ("a1", "has 2 characters, and a bucket name has 3 to 63"),
        ("b" * 64, "has 64 characters, and a bucket name has 3 to 63"),
        ("192.168.5.4", "is written as an IP address, which a bucket name is not"),
        ("a..b", "has two periods in a row, which a bucket name has not"),
        ("-xy", "does not begin and end with a letter or digit, as a bucket name does"),
        ("xy.", "does not begin and end with a letter or digit, as a bucket name does"),
        ("my bucket", "holds ' ', and a bucket name holds letters, digits, '.', '-' and '_' only"),
        ("my+bucket", "holds '+', and a bucket name holds letters, digits, '.', '-' and '_' only"),
        ("B" * 256, "has 256 characters, and a legacy (capitals or '_') bucket name has 3 to 255"),
        ("_xy", "does not begin and end with a letter or digit, as a bucket name does"),
    ],
)
def test_a_bucket_named_as_no_bucket_is_invalid_input_naming_the_member_and_the_rule(
    app: EmrML, bucket: str, rule: str
) -> None:
    """Such a location was looked for in S3, and the job failed at its end with NoSuchBucket (or, with
    ``s3://../other/x.csv``, a proxy that tidies paths read ``s3://other/x.csv``)."""
    location = f"s3://{bucket}/data/"  # a folder: what every member may name, OutputUri too
    for operation, member, request in _requests(location):
        with pytest.raises(InvalidInputException) as raised:
            app.call(operation, request)
        named, reason = raised.value.message.split(": ", 1)
        assert named.endswith(member), (operation, named)
        assert reason == f"'{location}' is not a valid S3 location: its bucket '{bucket}' {rule}", operation


def test_buckets_named_as_s3_names_them_are_accepted() -> None:
    from emrml.storage.locations import check_syntax

    for location in (
        "s3://my.bucket-1/x.csv",
        "s3://abc",
        "s3://a1b/",
        "s3://" + "b" * 63 + "/x",
        "s3://Legacy_Bucket/x.csv",  # us-east-1's legacy names: S3 still serves them, by path-style requests
        "s3://" + "B" * 255 + "/x",
        "s3://1.2.3.x/x",
        "s3://my-ap-hrzrlukc5m36ft7okagglf3gmwluquse1b-s3alias/x",  # an access point's alias
    ):
        check_syntax(location)


@pytest.mark.parametrize(
    ("character", "position"), [("\r", 6), ("\n", 1), ("\t", 10), ("\x7f", 3), ("\x85", 5)]
)
def test_an_s3_key_holding_a_control_character_is_invalid_input_naming_the_member(
    app: EmrML, character: str, position: int
) -> None:
    """A carriage return in a key passed, to be written into log lines, listings and manifests, where it
    starts a line of its own; S3 lists such keys only URL-encoded, and a local folder holds no NUL."""
    key = ("data/x.csv" * 2)[: position - 1] + character + "data/"  # a folder, as OutputUri names
    location = f"s3://bucket/{key}"
    shown = location.replace(character, f"\\x{ord(character):02x}")
    for operation, member, request in _requests(location):
        with pytest.raises(InvalidInputException) as raised:
            app.call(operation, request)
        named, reason = raised.value.message.split(": ", 1)
        assert named.endswith(member), (operation, named)
        assert reason.startswith(
            f"'{shown}' is not a valid S3 location: its key holds the control character "
            f"U+{ord(character):04X} at character {position}, and a key emrml reads or writes holds none"
        ), (operation, reason)
        assert character not in raised.value.message  # one line of visible characters


def test_an_s3_key_holding_nul_is_invalid_input_without_a_request_too() -> None:
    """A request's NUL is refused by its validation, which names the member; the CLI and the library check
    their locations alone."""
    from emrml.storage.locations import check_syntax

    with pytest.raises(InvalidInputException, match=r"'s3://bucket/a\\x00b' .* control character U\+0000 "):
        check_syntax("s3://bucket/a\x00b")


def test_an_s3_key_longer_than_s3_allows_is_invalid_input_naming_the_member(app: EmrML) -> None:
    """S3 keys have at most 1,024 bytes of UTF-8: a longer one passed, and the job writing it would fail at
    its end (KeyTooLongError), or, on a store that keeps it, a key no S3 could copy."""
    from emrml.storage.locations import check_syntax

    check_syntax("s3://bucket/" + "é" * 512)  # 1,024 bytes: the most S3 takes
    location = "s3://bucket/" + "a" * 1024 + "é"
    for operation, member, request in _requests(location):
        with pytest.raises(InvalidInputException) as raised:
            app.call(operation, request)
        named, reason = raised.value.message.split(": ", 1)
        assert named.endswith(member), (operation, named)
        size = 1027 if member == "OutputUri" else 1026  # an output folder's key is given its ending '/'
        assert reason == (
            f"'{location[:64]}…' is not a valid S3 location: its key is {size} bytes long in UTF-8, and an "
            "S3 key has at most 1024"
        ), operation
