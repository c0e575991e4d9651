"""Objects without a client-side encryption envelope where a key is configured: nothing authenticates
them, so every read of one is refused (naming the request member that gave it) unless
``s3_cse_allow_plaintext`` says such objects are expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cse_helpers import SCHEMA, read, rows, use, write

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.storage import locations
from emrml.storage.cse import DecryptionError
from emrml.storage.locations import list_files, read_text
from s3_server import S3


def test_with_cse_an_unencrypted_object_is_refused_unless_allowed(s3: S3, aes_key_file: Path) -> None:
    """Nothing authenticates an object without an envelope: whoever can write to the bucket could have put
    it there, so with a key configured it is refused (as the AWS S3 Encryption Client v3 does), unless
    ``s3_cse_allow_plaintext`` says unencrypted objects are expected."""
    s3.put("plain.csv", b"a,b\n1,2\n")
    s3.put("empty.csv", b"")
    use(s3, s3_cse_key=f"aes:{aes_key_file}")
    write(s3.uri("sealed.csv"), b"a,b\n3,4\n")
    for key in ("plain.csv", "empty.csv"):
        with pytest.raises(DecryptionError) as caught:
            read(s3.uri(key))
        message = caught.value.message
        assert f"'{s3.uri(key)}' is not encrypted on the client side" in message
        assert "s3_cse_allow_plaintext = true" in message
    with pytest.raises(DecryptionError, match="s3_cse_allow_plaintext"):
        read_text(s3.uri("plain.csv"))
    assert read(s3.uri("sealed.csv")) == b"a,b\n3,4\n"
    # Where every object read is encrypted, a prefix's listing counts their plaintext.
    assert {ref.name: ref.size for ref in list_files(s3.uri(""))} == {
        "plain.csv": 0,
        "sealed.csv": 8,
        "empty.csv": 0,
    }
    assert [f.size for f in locations.list_folder(s3.uri("")).files] == [0, 0, 8]
    use(s3, s3_cse_key=f"aes:{aes_key_file}", s3_cse_allow_plaintext=True)
    assert read(s3.uri("plain.csv")) == b"a,b\n1,2\n" and read(s3.uri("empty.csv")) == b""
    assert read(s3.uri("sealed.csv")) == b"a,b\n3,4\n"
    use(s3)  # no key at all: plain objects are simply data
    assert read(s3.uri("plain.csv")) == b"a,b\n1,2\n"


def test_the_plaintext_setting_is_read_from_the_environment_and_emrml_toml(tmp_path: Path) -> None:
    def allowed(environ: dict[str, str]) -> bool:
        return Settings.load(environ=environ, home=tmp_path).s3_cse_allow_plaintext

    assert allowed({"EMRML_S3_CSE_ALLOW_PLAINTEXT": "true"})
    assert not allowed({"EMRML_S3_CSE_ALLOW_PLAINTEXT": "0"}) and not allowed({})
    (tmp_path / "emrml.toml").write_text("s3_cse_allow_plaintext = true\n")
    assert allowed({})
    with pytest.raises(InvalidInputException, match="setting s3_cse_allow_plaintext: 'maybe'"):
        Settings.load(environ={"EMRML_S3_CSE_ALLOW_PLAINTEXT": "maybe"}, home=tmp_path)


def test_every_read_of_an_unencrypted_object_under_cse_is_refused(s3: S3, aes_key_file: Path) -> None:
    """Datasource data, a .schema beside it, schema inference, a recipe, batch prediction input and the
    storage browser's download all read through the one check; the refusal names the request member that
    gave the object, as Amazon ML's errors do (a batch prediction's input: its datasource's)."""
    from emrml.service import files
    from emrml.service.app import EmrML

    schema, data = SCHEMA, rows(200)
    settings = use(s3, s3_cse_key=f"aes:{aes_key_file}")
    write(s3.uri("sealed/data.csv"), data)
    s3.put("sealed/data.csv.schema", json.dumps(schema))  # planted beside encrypted data
    s3.put("planted/data.csv", data)
    write(s3.uri("planted/data.csv.schema"), json.dumps(schema).encode())
    app = EmrML(settings)
    try:

        def create(source_id: str, location: str, inline: bool = True) -> dict[str, Any]:
            spec = {"DataLocationS3": location, **({"DataSchema": json.dumps(schema)} if inline else {})}
            request = {"DataSourceId": source_id, "DataSpec": spec, "ComputeStatistics": True}
            app.call("CreateDataSourceFromS3", request)
            return app.wait("DataSource", source_id)

        refused = f"'{s3.uri('planted/data.csv')}' is not encrypted on the client side"
        source = create("ds-planted", s3.uri("planted/data.csv"))
        assert source["Status"] == "FAILED"
        assert source["Message"].startswith(f"DataSpec.DataLocationS3 {refused}")
        source = create("ds-schema", s3.uri("sealed/data.csv"), inline=False)
        assert source["Status"] == "FAILED"
        assert source["Message"].startswith(
            f"the schema file beside the data '{s3.uri('sealed/data.csv.schema')}' is not encrypted"
        )
        with pytest.raises(InvalidInputException) as caught:
            app.call("InferDataSchema", {"DataLocationS3": s3.uri("planted/data.csv")})
        assert caught.value.type_name == "InvalidInputException"
        assert caught.value.message.startswith(f"DataLocationS3 {refused}")
        with pytest.raises(InvalidInputException, match=refused):
            files.open_file(app, None, s3.uri("planted/data.csv")).read()
        assert create("ds-sealed", s3.uri("sealed/data.csv"))["Status"] == "COMPLETED"
        model = {"MLModelId": "ml-sealed", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-sealed"}
        app.call("CreateMLModel", model)
        assert app.wait("MLModel", "ml-sealed")["Status"] == "COMPLETED"
        s3.put("planted/recipe.json", b"{}")
        app.call(
            "CreateMLModel", {**model, "MLModelId": "ml-recipe", "RecipeUri": s3.uri("planted/recipe.json")}
        )
        recipe = app.wait("MLModel", "ml-recipe")
        assert recipe["Status"] == "FAILED"
        assert recipe["Message"].startswith(f"RecipeUri '{s3.uri('planted/recipe.json')}' is not encrypted")
        write(s3.uri("batch/data.csv"), data)
        assert create("ds-batch", s3.uri("batch/data.csv"))["Status"] == "COMPLETED"
        s3.put("batch/data.csv", data)  # replaced after the datasource was made
        app.call(
            "CreateBatchPrediction",
            {
                "BatchPredictionId": "bp-planted",
                "MLModelId": "ml-sealed",
                "BatchPredictionDataSourceId": "ds-batch",
                "OutputUri": s3.uri("out/"),
            },
        )
        prediction = app.wait("BatchPrediction", "bp-planted")
    finally:
        app.close()
    assert prediction["Status"] == "FAILED"
    assert prediction["Message"].startswith(
        f"DataSpec.DataLocationS3 '{s3.uri('batch/data.csv')}' is not encrypted on the client side"
    )
