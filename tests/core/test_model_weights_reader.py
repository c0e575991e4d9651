"""The model file's weights read without NumPy (``core.model._plain_weights``): the same values as NumPy's
reader, every other ``.npy`` layout left to NumPy, and nothing in a header ever run."""

from __future__ import annotations

import copy
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_model import artifact, members_of, rewrite

from emrml.core.linear import LinearModel
from emrml.core.model import load_artifact, save_artifact
from emrml.errors import InvalidInputException


def _numpy_weights(path: Path) -> np.ndarray:
    with zipfile.ZipFile(path) as archive:
        return np.load(io.BytesIO(archive.read("weights.npy")), allow_pickle=False)


@pytest.mark.parametrize(("kind", "n_features"), [("BINARY", 50), ("MULTICLASS", 7), ("REGRESSION", 0)])
def test_weights_read_by_hand_are_numpys(tmp_path: Path, kind: str, n_features: int) -> None:
    path = tmp_path / "model.zip"
    save_artifact(artifact(kind, n_features=n_features, feature_names=None), path)
    linear = load_artifact(path).linear
    expected = _numpy_weights(path)
    assert linear.n_features == n_features and linear.n_outputs == expected.shape[1]
    for output in range(linear.n_outputs):  # what a one-output model's Predict scores with
        assert linear.output_weights(output) == expected[:, output].tolist()
    assert linear.weights.dtype == np.float64 and linear.weights.shape == expected.shape
    np.testing.assert_array_equal(linear.weights, expected)


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda out, w: np.save(out, np.asfortranarray(w)), id="fortran-order"),
        pytest.param(lambda out, w: np.lib.format.write_array(out, w, version=(2, 0)), id="version-2"),
        pytest.param(lambda out, w: np.save(out, w.astype(">f8")), id="big-endian"),
    ],
)
def test_other_layouts_are_read_by_numpy(tmp_path: Path, write: object) -> None:
    path = tmp_path / "model.zip"
    original = artifact("MULTICLASS", n_features=5)
    save_artifact(original, path)
    members = members_of(path)
    payload = io.BytesIO()
    write(payload, original.linear.weights)  # type: ignore[operator]
    members["weights.npy"] = payload.getvalue()
    rewrite(path, members)
    assert load_artifact(path) == original


def test_a_header_is_never_run(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    save_artifact(artifact(n_features=2), path)
    members = members_of(path)
    touched = tmp_path / "ran"
    call = f"__import__('pathlib').Path({str(touched)!r}).touch()"
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {call}}}".encode()
    members["weights.npy"] = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(16)
    rewrite(path, members)
    with pytest.raises(InvalidInputException, match=r"weights\.npy is not a plain numeric \.npy array"):
        load_artifact(path)
    assert not touched.exists()


def _npy(descr: str, shape: tuple[int, ...], values: bytes) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + values


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (lambda good: good[:-8], r"weights\.npy is damaged: 392 bytes of values for shape \[50, 1\]"),
        # A header declaring far more values than the member holds: refused before anything is allocated
        # for them (NumPy's reader allocates the whole array first).
        (lambda good: _npy("<f8", (10**11, 1), bytes(16)), r"weights\.npy is damaged: 16 bytes of values"),
        (lambda good: _npy("<f4", (10**11, 1), bytes(16)), r"weights\.npy declares more values than"),
    ],
    ids=["truncated", "huge-plain", "huge-other"],
)
def test_weights_unlike_their_header_are_refused(tmp_path: Path, member: object, message: str) -> None:
    path = tmp_path / "model.zip"
    save_artifact(artifact(n_features=50), path)
    members = members_of(path)
    members["weights.npy"] = member(members["weights.npy"])  # type: ignore[operator]
    rewrite(path, members)
    with pytest.raises(InvalidInputException, match=message):
        load_artifact(path)


def test_a_model_read_by_hand_copies_and_pickles_as_its_arrays(tmp_path: Path) -> None:
    # Its weights are a flat array('d'); a copy, or another process (a pickled argument), gets the same model.
    path = tmp_path / "model.zip"
    save_artifact(artifact("BINARY", n_features=20), path)
    linear = load_artifact(path).linear
    for other in (copy.deepcopy(linear), pickle.loads(pickle.dumps(linear))):
        assert isinstance(other, LinearModel) and other == linear
        assert other.output_weights(0) == linear.output_weights(0)
        assert other.score_one([3, 7], [1.0, 2.5]) == linear.score_one([3, 7], [1.0, 2.5])
