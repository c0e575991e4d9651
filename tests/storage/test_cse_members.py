"""A client-side encrypted object that cannot be opened (no key configured, the wrong key) is named by the
request member that gave it, as a missing one is, in a job's message and in an operation's error."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from pathlib import Path

import pytest
from cse_helpers import SCHEMA, aes_key, rows, use

from emrml.errors import InvalidInputException
from emrml.service.app import EmrML
from emrml.storage import locations
from s3_server import S3

ROWS = rows(50)


def test_an_object_no_configured_key_opens_is_named_by_its_member(s3: S3, tmp_path: Path) -> None:
    keys = []
    for name in ("written.key", "other.key"):
        keys.append(tmp_path / name)
        keys[-1].write_text(base64.b64encode(os.urandom(32)).decode())
    locations.configure(dataclasses.replace(s3.settings, s3_cse_key=f"aes:{keys[0]}"))
    with locations.atomic_write(s3.uri("sealed/data.csv")) as stream:
        stream.write(ROWS)
    data = s3.uri("sealed/data.csv")
    cases = [
        (dataclasses.replace(s3.settings), f"'{data}' is encrypted on the client side (AES/GCM) and no key"),
        (dataclasses.replace(s3.settings, s3_cse_key=f"aes:{keys[1]}"), f"'{data}': none of the configured"),
    ]
    for number, (settings, message) in enumerate(cases):
        locations.configure(settings)
        app = EmrML(settings)
        try:
            with pytest.raises(InvalidInputException) as caught:
                app.call("InferDataSchema", {"DataLocationS3": data})
            assert f"DataLocationS3 {message}" in caught.value.message
            assert not caught.value.message.startswith("DataSpec")
            spec = {"DataLocationS3": data, "DataSchema": json.dumps(SCHEMA)}
            app.call("CreateDataSourceFromS3", {"DataSourceId": f"ds-{number}", "DataSpec": spec})
            source = app.wait("DataSource", f"ds-{number}")
        finally:
            app.close()
        assert source["Status"] == "FAILED" and f"DataSpec.DataLocationS3 {message}" in source["Message"]


def test_an_object_whose_key_description_is_nested_too_deeply_is_refused_naming_it(
    s3: S3, tmp_path: Path
) -> None:
    # Its metadata is whoever wrote the object's: a description nested past the JSON reader's recursion
    # limit raised RecursionError, an internal error rather than the object's refusal.
    settings = use(s3, s3_cse_key=f"aes:{aes_key(tmp_path / 'aes.key')}")
    envelope = {
        "x-amz-key-v2": base64.b64encode(os.urandom(48)).decode(),
        "x-amz-cek-alg": "AES/GCM/NoPadding",
        "x-amz-iv": base64.b64encode(os.urandom(12)).decode(),
        "x-amz-wrap-alg": "AES/GCM",
        "x-amz-matdesc": "[" * 1_500,
    }
    s3.client.put_object(Bucket=s3.bucket, Key="deep/data.csv", Body=os.urandom(64), Metadata=envelope)
    app = EmrML(settings)
    try:
        with pytest.raises(InvalidInputException) as caught:
            app.call("InferDataSchema", {"DataLocationS3": s3.uri("deep/data.csv")})
    finally:
        app.close()
    assert caught.value.message == (
        f"cannot decrypt DataLocationS3 '{s3.uri('deep/data.csv')}': x-amz-matdesc is not a JSON object"
    )
