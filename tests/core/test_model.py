"""The model artifact: round trips, atomic writes, and refusal of damaged, foreign or unsafe files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from emrml.core.linear import LinearModel, TrainingParameters
from emrml.core.model import ModelArtifact, load_artifact, save_artifact
from emrml.errors import InvalidInputException

SCHEMA = json.dumps({"version": "1.0", "targetAttributeName": "y", "attributes": []})
RECIPE = '{"outputs": ["ALL_INPUTS"]}'


def artifact(kind: str = "BINARY", n_features: int = 50, seed: int = 0, **changes: object) -> ModelArtifact:
    rng = np.random.default_rng(seed)
    k = 3 if kind == "MULTICLASS" else 1
    values = dict(
        model_type=kind,
        schema_json=SCHEMA,
        recipe=RECIPE,
        feature_space={"features": [{"name": "age", "kind": "quantile_bin", "edges": [18.5, 30.0, 1e300]}]},
        linear=LinearModel(kind, rng.normal(size=(n_features, k)), rng.normal(size=k)),  # type: ignore[arg-type]
        labels=["a", "b", "ç"] if kind == "MULTICLASS" else None,
        score_threshold=0.5 if kind == "BINARY" else None,
        parameters=TrainingParameters(l2=1e-6).to_api(),
        report={"passes": 3, "losses": [0.5, 0.4, 0.35], "target_mean": None},
        metrics={"auc": 0.93},
        feature_names=[f"f{i}" for i in range(n_features)],
    )
    values.update(changes)
    return ModelArtifact(**values)  # type: ignore[arg-type]


def rewrite(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("kind", ["BINARY", "MULTICLASS", "REGRESSION"])
def test_round_trip_is_exact_and_scores_identically(tmp_path: Path, kind: str) -> None:
    original = artifact(kind)
    path = tmp_path / "model.zip"
    size = save_artifact(original, path)
    assert size == path.stat().st_size > 0
    loaded = load_artifact(path)
    assert loaded == original
    X = sp.random(20, 50, density=0.2, format="csr", random_state=1)
    np.testing.assert_array_equal(loaded.linear.predict_scores(X), original.linear.predict_scores(X))


def test_optional_parts_may_be_absent(tmp_path: Path) -> None:
    original = artifact("REGRESSION", feature_names=None, metrics={}, feature_space={})
    save_artifact(original, tmp_path / "m.zip")
    assert set(members_of(tmp_path / "m.zip")) == {"model.json", "weights.npy"}
    assert load_artifact(tmp_path / "m.zip") == original


def test_model_json_is_plain_json_another_language_can_read(tmp_path: Path) -> None:
    original = artifact("MULTICLASS")
    save_artifact(original, tmp_path / "m.zip")
    members = members_of(tmp_path / "m.zip")
    document = json.loads(members["model.json"])
    assert document["format"] == "emrml-model" and document["format_version"] == 1
    assert document["model_type"] == "MULTICLASS"
    assert document["labels"] == ["a", "b", "ç"]
    assert document["weights"] == {"member": "weights.npy", "shape": [50, 3], "dtype": "float64"}
    assert document["bias"] == original.linear.bias.tolist()
    assert json.loads(document["schema"]) == json.loads(SCHEMA)
    # weights.npy: the documented .npy v1 header, then little-endian float64 in C order.
    raw = members["weights.npy"]
    assert raw[:6] == b"\x93NUMPY"
    header_length = int.from_bytes(raw[8:10], "little")
    header = raw[10 : 10 + header_length].decode("latin1")
    assert "'descr': '<f8'" in header and "'fortran_order': False" in header
    data = np.frombuffer(raw[10 + header_length :], dtype="<f8").reshape(50, 3)
    np.testing.assert_array_equal(data, original.linear.weights)


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    save_artifact(artifact(seed=1), path)
    save_artifact(artifact(seed=2), path)
    assert load_artifact(path) == artifact(seed=2)
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]


def test_a_failed_save_keeps_the_old_file_and_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    save_artifact(artifact(seed=1), path)
    with pytest.raises(ValueError):
        save_artifact(artifact(report={"loss": float("nan")}), path)
    assert load_artifact(path) == artifact(seed=1)
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]


def test_inconsistent_artifacts_are_not_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs 3 labels"):
        save_artifact(artifact("MULTICLASS", labels=["a"]), tmp_path / "m.zip")
    with pytest.raises(ValueError, match="does not match"):
        save_artifact(artifact("BINARY", model_type="REGRESSION"), tmp_path / "m.zip")
    with pytest.raises(ValueError, match="2 feature names for 50 weight rows"):
        save_artifact(artifact(feature_names=["x", "y"]), tmp_path / "m.zip")
    with pytest.raises(ValueError, match="format version 1, not 2"):
        save_artifact(artifact(format_version=2), tmp_path / "m.zip")


def test_mostly_zero_weights_are_compressed(tmp_path: Path) -> None:
    dense = artifact(n_features=20_000, feature_names=None)
    weights = dense.linear.weights.copy()
    weights[1000:] = 0.0
    pruned = artifact(
        n_features=20_000, feature_names=None, linear=LinearModel("BINARY", weights, dense.linear.bias)
    )
    dense_size = save_artifact(dense, tmp_path / "dense.zip")
    pruned_size = save_artifact(pruned, tmp_path / "pruned.zip")
    assert dense_size > 20_000 * 8
    assert pruned_size < 0.25 * dense_size
    assert load_artifact(tmp_path / "pruned.zip") == pruned


def test_a_million_feature_model_round_trips(tmp_path: Path) -> None:
    """How fast it loads is measured in bench/micro.py; here, that it loads whole."""
    big = artifact(n_features=1_000_000, feature_names=None)
    save_artifact(big, tmp_path / "big.zip")
    loaded = load_artifact(tmp_path / "big.zip")
    assert loaded.linear.weights.shape == (1_000_000, 1)
    assert loaded == big


# ------------------------------------------------------------------------------------------ refused files


def refused(path: Path, message: str) -> None:
    with pytest.raises(InvalidInputException, match=message) as caught:
        load_artifact(path)
    assert str(path) in caught.value.message


def test_missing_file_and_non_zip_files_are_refused(tmp_path: Path) -> None:
    refused(tmp_path / "absent.zip", "does not exist")
    (tmp_path / "text.zip").write_text("not a zip at all")
    refused(tmp_path / "text.zip", "not a zip archive")


def test_a_truncated_or_damaged_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    save_artifact(artifact(n_features=5000), path)
    data = path.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    refused(tmp_path / "cut.zip", "not a zip archive")
    damaged = bytearray(data)
    start = data.index(b"\x93NUMPY") + 200  # inside the stored weights: the CRC no longer matches
    damaged[start : start + 8] = b"\x00" * 8 if damaged[start : start + 8] != b"\x00" * 8 else b"\x01" * 8
    (tmp_path / "crc.zip").write_bytes(bytes(damaged))
    refused(tmp_path / "crc.zip", "weights.npy member is damaged")


@pytest.mark.parametrize("member", ["model.json", "weights.npy", "feature_names.json"])
def test_a_missing_member_is_refused(tmp_path: Path, member: str) -> None:
    path = tmp_path / "m.zip"
    save_artifact(artifact(), path)
    members = members_of(path)
    del members[member]
    rewrite(path, members)
    refused(path, f"no {member} member")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other-tool"}, 'lacks the marker "format": "emrml-model"'),
        ({"format_version": 2}, "model format version 2; this emrml reads version 1"),
        ({"format_version": "1"}, "model format version '1'"),
        ({"model_type": "CLUSTERING"}, "unknown model_type 'CLUSTERING'"),
        ({"weights": {"member": "weights.npy", "shape": [49, 1], "dtype": "float64"}}, r"shape \[50, 1\]"),
        ({"bias": [0.1, 0.2]}, "bias must have 1 values"),
        ({"bias": ["x"]}, "bias must be a list of finite numbers"),
        ({"labels": [1, 2]}, "labels must be a list of strings"),
        ({"score_threshold": "high"}, "score_threshold must be a number"),
        ({"schema": {"not": "a string"}}, "key 'schema' must be str"),
        ({"feature_names": "../etc/passwd"}, "feature_names must name"),
        # A BINARY file's weights under another model type: one output, which scoring takes for BINARY.
        ({"model_type": "MULTICLASS", "labels": ["a"]}, "two or more distinct labels; got \\['a'\\]"),
        ({"labels": ["0", "1"]}, "a BINARY model has no labels"),
        ({"score_threshold": 7}, "for a BINARY model, from 0 to 1; got 7"),
        ({"model_type": "REGRESSION"}, "score_threshold must be null or, for a BINARY model"),
    ],
)
def test_foreign_or_inconsistent_model_json_is_refused(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "m.zip"
    save_artifact(artifact(), path)
    members = members_of(path)
    document = json.loads(members["model.json"])
    document.update(change)
    members["model.json"] = json.dumps(document).encode()
    rewrite(path, members)
    refused(path, message)


@pytest.mark.parametrize(
    ("member", "text"),
    [
        ("model.json", b"\xff{not json"),
        # Nested past the JSON reader's recursion limit: a RecursionError, not the file's refusal.
        ("model.json", b"[" * 100_000),
        ("feature_names.json", b"[" * 100_000),
    ],
)
def test_members_that_are_not_json_are_refused(tmp_path: Path, member: str, text: bytes) -> None:
    path = tmp_path / "m.zip"
    save_artifact(artifact(), path)
    members = members_of(path)
    members[member] = text
    rewrite(path, members)
    refused(path, f"{member} is not valid JSON")


def test_an_object_array_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    save_artifact(artifact(n_features=2), path)
    members = members_of(path)
    payload = io.BytesIO()
    np.save(payload, np.array([[print], [len]], dtype=object), allow_pickle=True)
    members["weights.npy"] = payload.getvalue()
    rewrite(path, members)
    refused(path, "weights.npy is not a plain numeric .npy array")


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.zeros((50, 1), dtype=np.float32), "2-D float64"),
        (np.zeros(50), "2-D float64"),
        (np.full((50, 1), np.inf), "not finite"),
    ],
)
def test_weights_of_the_wrong_kind_are_refused(tmp_path: Path, weights: np.ndarray, message: str) -> None:
    path = tmp_path / "m.zip"
    save_artifact(artifact(), path)
    members = members_of(path)
    payload = io.BytesIO()
    np.save(payload, weights)
    members["weights.npy"] = payload.getvalue()
    rewrite(path, members)
    refused(path, message)


def test_big_endian_weights_are_read_in_native_order(tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    original = artifact()
    save_artifact(original, path)
    members = members_of(path)
    payload = io.BytesIO()
    np.save(payload, original.linear.weights.astype(">f8"))
    members["weights.npy"] = payload.getvalue()
    rewrite(path, members)
    loaded = load_artifact(path)
    assert loaded == original
    assert loaded.linear.weights.dtype == np.float64 and loaded.linear.weights.dtype.isnative


def test_a_target_of_another_type_says_which_model_it_makes_and_how_to_get_the_one_asked_for() -> None:
    from emrml.core.model import check_target
    from emrml.core.schema import Attribute, AttributeType, Schema

    schema = Schema(
        (Attribute("x", AttributeType.NUMERIC), Attribute("quality", AttributeType.NUMERIC)), "quality"
    )
    with pytest.raises(InvalidInputException) as caught:
        check_target(schema, "MULTICLASS")
    assert caught.value.message == (
        "a MULTICLASS model needs a CATEGORICAL target, but in the training datasource the target 'quality' "
        "is NUMERIC; a NUMERIC target makes a REGRESSION model. For a MULTICLASS model, give the datasource "
        "a schema that types 'quality' as CATEGORICAL (inference types a column of numbers NUMERIC and one "
        "of two values such as 0/1 BINARY)"
    )
    check_target(schema, "REGRESSION")  # no error
