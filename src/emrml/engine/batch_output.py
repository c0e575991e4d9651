"""A batch prediction's files in its output folder, apart from scoring: the names of its results, its
attempts' temporary folders, the output folders a job made, and the removal of what a batch
prediction that did not complete wrote (``discard_output``).

No numpy or Arrow here: the service removes a given-up or deleted job's output with these (``service.tasks``)
without importing the scoring engine.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import suppress
from pathlib import Path

from emrml.config import Settings
from emrml.engine.outputs import manifest_location, output_prefix, result_location
from emrml.errors import DataError, InvalidInputException
from emrml.storage.locations import (
    FileRef,
    delete,
    exists,
    list_files,
    local_directory,
    read_text,
    remove_temporaries,
)


def attempt_folder(prefix: str, settings: Settings, batch_prediction_id: str, attempt: int) -> Path:
    """Where an attempt's parts are written and assembled: a hidden folder in a local output (results are
    then renamed into place), the scratch folder for a remote store (results are then uploaded)."""
    if local_directory(prefix) is None:
        exists(prefix, what="OutputUri")  # a missing or forbidden bucket fails here, before any scoring
    stem = _scratch_location(prefix, settings, batch_prediction_id)
    return stem.with_name(f"{stem.name}{_ATTEMPT}{attempt}")


#: How the names of a batch prediction's temporary folders (and of its marker) start, in a local output.
_TEMPORARY = ".tmp-"
#: Between a batch prediction's temporary folder stem and its attempt number: ids never hold a "+", so no
#: batch prediction's folders are taken for another's whose id starts the same.
_ATTEMPT = "+attempt-"


def _scratch_location(prefix: str, settings: Settings, batch_prediction_id: str) -> Path:
    """The stem of the attempts' temporary folders (``attempt_folders``)."""
    local = local_directory(prefix)
    if local is not None:
        return Path(local) / "batch-prediction" / f"{_TEMPORARY}{batch_prediction_id}"
    return settings.scratch_dir / f"batch-{batch_prediction_id}"


def made_marker(prefix: str, settings: Settings, batch_prediction_id: str) -> Path | None:
    """In a local output, the hidden file in ``batch-prediction/`` recording which folders the job made
    (``make_output_folders``), kept until the job completes: a job that does not complete removes those it
    made once empty (``remove_made``), and never one the user had."""
    if local_directory(prefix) is None:
        return None
    stem = _scratch_location(prefix, settings, batch_prediction_id)
    return stem.with_name(f"{stem.name}+made")


def make_output_folders(made: Path) -> None:
    """Make the output's ``batch-prediction/`` folder, and the folders above it, where missing, and record
    in the marker ``made`` what the job made: the folders from ``batch-prediction/`` up that did not exist,
    and whether ``result/`` (made when results are published) did not. An earlier attempt's record stands:
    what was there at the job's first start is what the user had."""
    if made.exists():
        return
    folder, levels = made.parent, 0
    while not folder.exists():
        folder, levels = folder.parent, levels + 1
    made_result = not (made.parent / "result").exists()
    made.parent.mkdir(parents=True, exist_ok=True)
    made.write_text(json.dumps({"levels": levels, "result": made_result}))


def _made_record(made: Path) -> tuple[int, bool] | None:
    """The marker's record (``make_output_folders``): the levels made from ``batch-prediction/`` up, and
    whether ``result/`` was made; None without a readable one. A marker folder is an earlier version's,
    made with ``batch-prediction/`` (and so ``result/``)."""
    if made.is_dir():
        return 1, True
    try:
        record = json.loads(made.read_text())
        levels, made_result = record["levels"], record["result"]
    except (OSError, ValueError, TypeError, KeyError, RecursionError):  # RecursionError: nested deeply
        return None
    if type(levels) is not int or levels < 0 or type(made_result) is not bool:
        return None
    return levels, made_result


def remove_made(made: Path | None, settings: Settings, *, keep_marker: bool) -> None:
    """Remove the folders a job that did not complete made (``make_output_folders``: its ``result/``, its
    ``batch-prediction/`` and the folders above that) that hold nothing else (another job's output, a
    user's file: then they stay). ``keep_marker``: the marker stays while a folder the job made does (the
    job may run again, and made it all the same).

    The marker lies in the user's folder, where whoever may write there may rewrite it: the folders above
    are removed up to a data root or the home at most (``_keeps``), whatever number of levels it says,
    so that an empty data root and the empty folders holding it are never removed (one the job made stays)."""
    if made is None or not made.exists():
        return
    record = _made_record(made)
    if record is None:  # not one this version wrote: what it says is not known, nothing but it goes
        if not keep_marker:
            with suppress(OSError):
                _remove_marker(made)
        return
    levels, made_result = record
    folder = made.parent
    with suppress(OSError):
        others = [entry.name for entry in os.scandir(folder) if entry.name != made.name]
        # A job running beside it (another attempt, another batch prediction) may be about to publish
        # its results into result/: the folder stays while one is.
        running = any(name.startswith(_TEMPORARY) for name in others)
        if made_result and not running:
            with suppress(OSError):  # not there, or holding another job's results
                (folder / "result").rmdir()
                others.remove("result")
        if keep_marker and ((levels and others) or (made_result and "result" in others)):
            return
        _remove_marker(made)
        if levels and not others:
            kept = [os.path.realpath(path) for path in (settings.home, *settings.data_roots)]
            for _ in range(levels):
                if _keeps(folder, kept):
                    break
                folder.rmdir()
                folder = folder.parent


def _keeps(folder: Path, kept: list[str]) -> bool:
    """Whether ``folder``, resolved, is one of the ``kept`` folders or holds one."""
    resolved = os.path.realpath(folder)
    below = resolved.rstrip(os.sep) + os.sep
    return any(path == resolved or path.startswith(below) for path in kept)


def completed_made(made: Path | None) -> None:
    """The job completed: what it made holds its results and stays; the marker goes."""
    if made is not None:
        with suppress(FileNotFoundError):
            _remove_marker(made)


def _remove_marker(made: Path) -> None:
    if made.is_dir():
        made.rmdir()
    else:
        made.unlink()


def attempt_folders(prefix: str, settings: Settings, batch_prediction_id: str) -> dict[int, Path]:
    """The temporary folders of the batch prediction's attempts, by attempt number."""
    stem = _scratch_location(prefix, settings, batch_prediction_id)
    folders = {}
    with suppress(OSError):
        for entry in stem.parent.iterdir():
            number = entry.name.removeprefix(stem.name + _ATTEMPT)
            if number != entry.name and number.isdigit():
                folders[int(number)] = entry
    return folders


def sweep_batch_scratch(settings: Settings, running: set[tuple[str, int]]) -> None:
    """Remove the home's scratch folders (those of outputs in a remote store) of batch prediction attempts
    not in ``running`` (id, attempt): a thread of a job given up, still busy when its server stopped,
    ended without its cleanup code, and a job that is not run again would keep its folder for good."""
    with suppress(OSError):
        for entry in settings.scratch_dir.iterdir():
            stem, attempt_marker, number = entry.name.partition(_ATTEMPT)
            if not (attempt_marker and stem.startswith("batch-") and number.isdigit()):
                continue
            if (stem.removeprefix("batch-"), int(number)) not in running:
                shutil.rmtree(entry, ignore_errors=True)


def discard_output(
    output_uri: str, settings: Settings, batch_prediction_id: str, data_location: str | None
) -> None:
    """Remove everything a batch prediction that did not complete may have written: the manifest first (so
    no reader takes what remains for complete results), the results it lists and those named after the
    datasource's files (``data_location``; a worker may die between publishing results and writing the
    manifest), and the temporaries. For a job given up after its worker died (which ran no cleanup code),
    a job deleted while it ran, and a failed job whose earlier attempt died after publishing."""
    prefix = output_prefix(output_uri)
    manifest = manifest_location(output_uri, batch_prediction_id)
    locations: set[str] = set()
    with suppress(InvalidInputException, ValueError, RecursionError):  # RecursionError: nested thousands deep
        if exists(manifest):
            results = json.loads(read_text(manifest, what="the batch prediction manifest"))
            if isinstance(results, dict):
                # Only names this batch prediction gives its results (``result_names``: one path segment
                # after its own prefix): the manifest lies in the user's folder, and an entry such as
                # ``…/result/<id>-/../../elsewhere`` must not make the server delete another file.
                mine = result_location(prefix, batch_prediction_id + "-")
                locations.update(
                    value
                    for value in map(str, results.values())
                    if value.startswith(mine) and "/" not in value[len(mine) :]
                )
            delete(manifest)
    remove_temporaries(manifest)
    if data_location:
        with suppress(InvalidInputException, DataError):
            names = result_names(list_files(data_location), batch_prediction_id)
            locations.update(result_file(prefix, name) for name in names)
    for location in sorted(locations):
        with suppress(InvalidInputException):
            delete(location)
    for folder in attempt_folders(prefix, settings, batch_prediction_id).values():
        shutil.rmtree(folder, ignore_errors=True)
    remove_made(made_marker(prefix, settings, batch_prediction_id), settings, keep_marker=False)


def result_file(prefix: str, name: str) -> str:
    local = local_directory(prefix)
    if local is not None:
        return os.path.join(local, "batch-prediction", "result", name)
    return result_location(prefix, name)


def result_names(files: list[FileRef], batch_prediction_id: str) -> list[str]:
    """``<id>-<input file name>.gz`` per file; a name taken already gets ``-2``, ``-3``… before ``.gz``."""
    used: set[str] = set()
    names = []
    for file in files:
        stem = f"{batch_prediction_id}-{os.path.basename(file.key.rstrip('/')) or 'data'}"
        name, copy = f"{stem}.gz", 2
        while name in used:
            name, copy = f"{stem}-{copy}.gz", copy + 1
        used.add(name)
        names.append(name)
    return names
