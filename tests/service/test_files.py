"""The storage browser's operations on S3 (service/files.py): a user granted storage on a bucket's prefix
lists, uploads, downloads, copies to and from local files, moves and deletes there, and nowhere else."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.service import files
from emrml.service.app import EmrML
from s3_server import S3

CAROL = "arn:aws:iam::000000000000:user/carol"


@pytest.fixture
def app(s3: S3) -> Iterator[EmrML]:
    application = EmrML(s3.settings)
    application.access.create_user("carol")
    application.access.create_group("team")
    application.access.add_statement(
        "team", {"Effect": "Allow", "Action": ["storage:*"], "Resource": s3.uri("team/*")}
    )
    application.access.add_member("team", "carol")
    yield application
    application.close()


def test_a_granted_prefix_is_browsed_and_changed(app: EmrML, s3: S3) -> None:
    body = b"x,y\n" + b"1,2\n" * 5000
    uploaded = files.upload(app, CAROL, s3.uri("team/in"), "rows.csv", io.BytesIO(body))
    assert uploaded == s3.uri("team/in/rows.csv") and s3.get("team/in/rows.csv") == body
    files.make_folder(app, CAROL, s3.uri("team"), "out")
    page = files.list_folder(app, CAROL, s3.uri("team"))
    assert page.folders == [s3.uri("team/in/"), s3.uri("team/out/")] and page.files == []
    with files.open_file(app, CAROL, uploaded) as stream:
        assert stream.read() == body
    files.copy(app, CAROL, uploaded, s3.uri("team/out/copy.csv"))
    files.copy(app, CAROL, s3.uri("team/out/copy.csv"), s3.uri("team/out/moved.csv"), move=True)
    assert s3.list_keys("team/out/") == ["team/out/", "team/out/moved.csv"]
    files.delete(app, CAROL, s3.uri("team/out/moved.csv"))
    assert s3.list_keys("team/out/") == ["team/out/"]


def test_outside_the_grant_everything_is_refused(app: EmrML, s3: S3, tmp_path: Path) -> None:
    s3.put("other/secret.csv", "not carol's")
    for refused in (
        lambda: files.list_folder(app, CAROL, s3.uri("other")),
        lambda: files.open_file(app, CAROL, s3.uri("other/secret.csv")),
        lambda: files.upload(app, CAROL, s3.uri("other"), "x.csv", io.BytesIO(b"x")),
        lambda: files.delete(app, CAROL, s3.uri("other/secret.csv")),
        lambda: files.copy(app, CAROL, s3.uri("other/secret.csv"), s3.uri("team/stolen.csv")),
        lambda: files.copy(app, CAROL, s3.uri("team/x.csv"), str(tmp_path / "out.csv")),
    ):
        with pytest.raises(AccessDeniedException, match="carol is not authorized to perform: storage:"):
            refused()
    assert s3.get("other/secret.csv") == b"not carol's" and "team/stolen.csv" not in s3.list_keys()
    with pytest.raises(InvalidInputException, match="must be one path part"):
        files.make_folder(app, CAROL, s3.uri("team"), "a/b")


def test_with_client_side_encryption_uploads_are_sealed_and_downloads_opened(s3: S3, tmp_path: Path) -> None:
    import base64
    import dataclasses
    import os

    key_file = tmp_path / "aes.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    app = EmrML(dataclasses.replace(s3.settings, s3_cse_key=f"aes:{key_file}", data_roots=(tmp_path,)))
    try:
        app.access.create_user("carol")
        app.access.create_group("team")
        app.access.add_statement(
            "team",
            {"Effect": "Allow", "Action": ["storage:*"], "Resource": [s3.uri("team/*"), f"{tmp_path}/*"]},
        )
        app.access.add_member("team", "carol")
        body = b"name,secret\n" + b"alice,hunter2\n" * 2000
        uploaded = files.upload(app, CAROL, s3.uri("team"), "rows.csv", io.BytesIO(body))
        stored = s3.client.get_object(Bucket=s3.bucket, Key="team/rows.csv")
        # What S3 holds is the envelope's ciphertext, never the rows.
        assert b"hunter2" not in stored["Body"].read() and "x-amz-key-v2" in stored["Metadata"]
        with files.open_file(app, CAROL, uploaded) as stream:
            assert stream.read() == body
        files.copy(app, CAROL, uploaded, str(tmp_path / "plain.csv"))
        assert (tmp_path / "plain.csv").read_bytes() == body
    finally:
        app.close()
