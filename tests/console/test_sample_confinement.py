"""The home page's samples write their file where the server may write for a request: inside the data
roots, as resolved, never through a link out of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console_helpers import login_token

from emrml.console.samples import sample_location


def test_a_sample_folder_linked_out_of_the_data_roots_is_not_written(
    fresh_admin: tuple[Any, Path], tmp_path: Path
) -> None:
    """Whoever can write in a data root may make its ``samples`` folder a link to any folder the server can
    write: the sample is refused there, and nothing is written outside the roots."""
    client, home = fresh_admin
    outside = tmp_path / "outside"
    outside.mkdir()
    sample = sample_location(home)
    sample.parent.parent.mkdir(parents=True)
    sample.parent.symlink_to(outside, target_is_directory=True)
    page = client.get("/console/")
    # The admin may read anything: only the data roots stand in the way, so no button is offered...
    assert page.status_code == 200 and 'id="sample-binary"' not in page.text
    # ...and a form sent all the same is refused, naming the setting, before anything is written.
    refused = client.post("/console/samples", data={"csrf_token": login_token(page.text), "sample": "binary"})
    assert refused.status_code == 403, refused.text
    assert "outside the data roots" in refused.text and "EMRML_DATA_ROOTS" in refused.text
    assert list(outside.iterdir()) == []


def test_a_sample_in_the_data_roots_is_written_and_trained(fresh_admin: tuple[Any, Path]) -> None:
    client, home = fresh_admin
    page = client.get("/console/")
    assert 'id="sample-binary"' in page.text
    sent = client.post("/console/samples", data={"csrf_token": login_token(page.text), "sample": "binary"})
    assert sent.status_code == 303 and "/console/models/" in sent.headers["location"]
    assert sample_location(home).stat().st_size > 0
