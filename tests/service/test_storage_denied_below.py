"""A location naming a folder uses every file below it: a Deny of part of the folder refuses it too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from emrml.errors import AccessDeniedException
from emrml.service.app import EmrML

SCHEMA = json.dumps(
    {
        "attributes": [
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "y", "attributeType": "NUMERIC"},
        ],
        "targetAttributeName": "y",
        "dataFileContainsHeader": True,
    }
)
ROWS = "x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(40))


def test_a_folder_with_a_denied_part_is_refused_whole(sqlite_app: EmrML, tmp_path: Path) -> None:
    # Granted the folder and denied its private/ part, a user named the folder itself: the datasource's
    # job then read private/secret.csv with the rest (NumberOfFiles 2), and a batch prediction's output
    # folder would have written below a denied part.
    app, data = sqlite_app, tmp_path / "data"
    (data / "private").mkdir(parents=True)
    (data / "public").mkdir()
    (data / "zlinked").mkdir()
    for path in (data / "public.csv", data / "private" / "secret.csv", data / "public" / "part.csv"):
        path.write_text(ROWS)
    (data / "zlinked" / "part.csv").symlink_to(data / "private" / "secret.csv")
    (data / "public" / "notes.txt.secret").write_text("hidden from readers\n")
    (data / "public" / "again").mkdir()
    (data / "public" / "again" / "part.csv").write_text(ROWS)
    access = app.access
    access.create_user("dora")
    access.create_group("readers")
    access.add_member("readers", "dora")
    for effect, action, resource in [
        ("Allow", ["storage:Read", "storage:Write"], [f"{data}/*"]),
        ("Deny", ["storage:Read"], [f"{data}/private/*", "*.secret"]),
        ("Deny", ["storage:Write"], [f"{data}/public/kept/*"]),
    ]:
        access.add_statement("readers", {"Effect": effect, "Action": action, "Resource": resource})
    caller = access.user_arn("dora")

    def create(entity_id: str, location: str) -> None:
        spec = {"DataLocationS3": location, "DataSchema": SCHEMA}
        request = {"DataSourceId": entity_id, "DataSpec": spec, "ComputeStatistics": True}
        app.call("CreateDataSourceFromS3", request, caller=caller)

    for location, denied in [
        (str(data), f"{data}/private/secret.csv"),  # the first file refused, in the order listed
        (f"{data}/", f"{data}/private/secret.csv"),
        (f"{data}/public/..", f"{data}/private/secret.csv"),
        (f"{data}/public", f"{data}/public/notes.txt.secret"),
        # A link below the folder is the file it leads to.
        (f"{data}/zlinked", f"{data}/zlinked/part.csv"),
    ]:
        refused = f"storage:Read on resource: {re.escape(denied)} \\(below {re.escape(location)}, whose every"
        with pytest.raises(AccessDeniedException, match=refused):
            create("ds-all", location)
        with pytest.raises(AccessDeniedException, match=refused):
            app.call("InferDataSchema", {"DataLocationS3": location}, caller=caller)
    # A file beside the denied part is read alone, and a folder without one is whole: both accepted.
    create("ds-file", str(data / "public.csv"))
    create("ds-folder", str(data / "public" / "again"))
    app.jobs.run_pending()
    folder = app.call("GetDataSource", {"DataSourceId": "ds-folder"}, caller=caller)
    assert folder["Status"] == "COMPLETED" and folder["NumberOfFiles"] == 1
    # Written, a location is always a folder: an output folder above a denied part is refused.
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-a", "MLModelType": "REGRESSION", "TrainingDataSourceId": "ds-folder"},
        caller=caller,
    )
    batch = {"MLModelId": "ml-a", "BatchPredictionDataSourceId": "ds-file"}
    with pytest.raises(AccessDeniedException, match=f"storage:Write on resource: {data}/public/kept/\\*"):
        app.call(
            "CreateBatchPrediction",
            {**batch, "BatchPredictionId": "bp-a", "OutputUri": f"{data}/public/"},
            caller=caller,
        )
    app.call(
        "CreateBatchPrediction",
        {**batch, "BatchPredictionId": "bp-b", "OutputUri": f"{data}/public/out/"},
        caller=caller,
    )
    app.jobs.run_pending()
    written = app.call("GetBatchPrediction", {"BatchPredictionId": "bp-b"}, caller=caller)
    assert written["Status"] == "COMPLETED", written.get("Message")
