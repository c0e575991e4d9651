"""Storage by URI: listing, reading and atomic writing of local paths and file:// URIs (s3://: test_s3.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from emrml.errors import InvalidInputException
from emrml.storage import locations
from emrml.storage.local import guarded_here, guarded_writes
from emrml.storage.locations import (
    FileRef,
    atomic_write,
    delete,
    exists,
    list_files,
    list_folder,
    make_folder,
    open_binary,
    publish_file,
    read_named_text,
    read_text,
    schema_candidates,
    schema_location_for,
)


def make(root: Path, relative: str, content: bytes = b"a,b\n") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_file_lists_itself(tmp_path: Path) -> None:
    path = make(tmp_path, "data.csv", b"x,y\n1,2\n")
    assert list_files(str(path)) == [FileRef(uri=str(path), key=str(path)[1:], size=8)]


def test_real_dataset_directory_skips_the_schema_file(shared_datasets: Path) -> None:
    folder = shared_datasets / "sms_spam"
    files = list_files(str(folder))
    assert [Path(ref.uri).name for ref in files] == ["README.md", "data.csv"]
    data = files[1]
    assert data.uri == os.path.abspath(folder / "data.csv")
    assert data.key == data.uri[1:]
    assert data.size == (folder / "data.csv").stat().st_size


def test_a_data_file_whose_name_is_not_utf8_is_named_not_an_internal_error(tmp_path: Path) -> None:
    """Its surrogate-escaped location could not be stored: the datasource's job failed with an internal
    error. Refused naming the file (its odd byte escaped), not skipped with its records."""
    make(tmp_path, "in/a.csv")
    with open(os.fsencode(tmp_path) + b"/in/b-\xe9.csv", "wb") as odd:
        odd.write(b"a,b\n1,2\n")
    with pytest.raises(InvalidInputException) as caught:
        list_files(str(tmp_path / "in") + "/")
    assert caught.value.message == (
        f"DataSpec.DataLocationS3 '{tmp_path}/in/' holds the file '{tmp_path}/in/b-\\xe9.csv', whose name is "
        "not UTF-8: rename it"
    )


def test_directory_listing_is_recursive_sorted_and_skips_hidden_and_schema_files(tmp_path: Path) -> None:
    for relative in [
        "in/z.csv",
        "in/a/b.csv",
        "in/a.csv",
        "in/a/.hidden.csv",
        "in/.staging/part-0.csv",
        "in/part.csv.schema",
        "in/.schema",
        "in/deep/er/x.csv.gz",
    ]:
        make(tmp_path, relative)
    os.symlink(tmp_path / "missing", tmp_path / "in" / "dangling.csv")
    os.mkfifo(tmp_path / "in" / "pipe.csv")
    expected = ["in/a.csv", "in/a/b.csv", "in/deep/er/x.csv.gz", "in/z.csv"]  # '.' (0x2e) sorts before '/'
    for location in (str(tmp_path / "in"), str(tmp_path / "in") + "/"):
        files = list_files(location)
        assert [os.path.relpath(ref.uri, tmp_path) for ref in files] == expected
        assert [ref.key for ref in files] == sorted(ref.key for ref in files)
        assert all(ref.key == ref.uri.lstrip("/") and ref.size == 4 for ref in files)


def test_hidden_or_schema_file_named_directly_is_listed(tmp_path: Path) -> None:
    path = make(tmp_path, ".hidden.csv")
    assert [ref.uri for ref in list_files(str(path))] == [str(path)]


def test_relative_home_and_file_uri_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make(tmp_path, "my data/#1.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for location in (
        "my data/#1.csv",
        "./my data/../my data/#1.csv",
        "~/my data/#1.csv",
        f"file://{tmp_path}/my%20data/%231.csv",
        f"file://localhost{tmp_path}/my data/#1.csv",
    ):
        assert list_files(location) == [FileRef(uri=str(path), key=str(path)[1:], size=4)], location
        assert exists(location)
        with open_binary(location) as stream:
            assert stream.read() == b"a,b\n"


def test_missing_and_empty_locations(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputException) as caught:
        list_files(str(tmp_path / "nope.csv"))
    assert caught.value.message == f"DataSpec.DataLocationS3 '{tmp_path / 'nope.csv'}' does not exist"
    make(tmp_path, "empty/.schema")
    make(tmp_path, "empty/data.csv.schema")
    for location in (str(tmp_path / "empty"), str(tmp_path / "empty") + "/"):
        with pytest.raises(InvalidInputException, match="contains no data files"):
            list_files(location)
    path = make(tmp_path, "data.csv")
    with pytest.raises(InvalidInputException, match=r"DataLocationS3 '.*data\.csv/' does not exist"):
        list_files(str(path) + "/")
    with pytest.raises(InvalidInputException, match=r"^OutputUri '.*' does not exist"):
        list_files(str(tmp_path / "gone") + "/", what="OutputUri")


@pytest.mark.parametrize(
    "location", ["hdfs://namenode/data.csv", "https://example.com/data.csv", "file://host/x"]
)
def test_other_schemes_are_refused(location: str) -> None:
    with pytest.raises(InvalidInputException, match=r"unsupported scheme|not a local file URI"):
        list_files(location)


def test_empty_location_is_refused() -> None:
    with pytest.raises(InvalidInputException, match="must not be empty"):
        exists("")


def test_open_binary_errors_name_the_location(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputException) as caught:
        open_binary(str(tmp_path / "x.csv"), what="RecipeUri")
    assert caught.value.message == f"RecipeUri '{tmp_path / 'x.csv'}' does not exist"
    with pytest.raises(InvalidInputException, match="is a directory, not a file"):
        open_binary(str(tmp_path))


def test_open_binary_reads_raw_bytes_in_1_mib_blocks(shared_datasets: Path) -> None:
    path = shared_datasets / "bank_marketing" / "data.csv"
    with open_binary(str(path)) as stream:
        assert stream.read(5) == path.read_bytes()[:5]
        assert len(stream.peek(1)) == (1 << 20) - 5  # type: ignore[attr-defined]


def test_read_text(tmp_path: Path, shared_datasets: Path) -> None:
    schema = shared_datasets / "sms_spam" / "data.csv.schema"
    assert read_text(str(schema)) == schema.read_text(encoding="utf-8")
    bom = make(tmp_path, "bom.schema", '\ufeff{"é": 1}'.encode())
    assert read_text(str(bom)) == '{"é": 1}'
    latin = make(tmp_path, "latin.schema", b'{"a": "caf\xe9"}')
    with pytest.raises(InvalidInputException) as caught:
        read_text(str(latin), what="DataSchemaLocationS3")
    assert caught.value.message == (
        f"DataSchemaLocationS3 '{latin}' is not UTF-8 text (invalid byte at offset 10)"
    )
    big = make(tmp_path, "big.schema", b"x" * 101)
    assert read_text(str(big), max_bytes=101) == "x" * 101
    with pytest.raises(InvalidInputException, match="is larger than 100 bytes"):
        read_text(str(big), max_bytes=100)
    with pytest.raises(InvalidInputException, match=r"^DataSchemaLocationS3 '.*' does not exist$"):
        read_text(str(tmp_path / "none.schema"), what="DataSchemaLocationS3")


def test_a_named_file_is_read_up_to_the_text_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local --schema or recipe file was read whole: /dev/zero (or any huge file) until memory ran out."""
    monkeypatch.setattr(locations, "TEXT_MAX_BYTES", 100)
    read = []
    real_open = Path.open

    def counting_open(path: Path, *args: object, **kwargs: object) -> object:
        stream = real_open(path, *args, **kwargs)  # type: ignore[call-overload]
        real_read = stream.read
        stream.read = lambda size=-1: read.append(size) or real_read(size)  # type: ignore[method-assign]
        return stream

    monkeypatch.setattr(Path, "open", counting_open)
    huge = make(tmp_path, "huge.schema", b"x" * 10_000)  # /dev/zero's stand-in, which never ends
    with pytest.raises(InvalidInputException, match=r"^--schema .*huge\.schema: larger than 100 bytes$"):
        read_named_text(str(huge), what="--schema")
    assert read == [101]  # no more read than the limit tells too large
    fits = make(tmp_path, "fits.schema", b"x" * 100)
    assert read_named_text(fits, what="schema") == "x" * 100
    with pytest.raises(InvalidInputException, match=r"^recipe .*none\.recipe: cannot read the file \("):
        read_named_text(tmp_path / "none.recipe", what="recipe")


def test_exists(tmp_path: Path) -> None:
    path = make(tmp_path, "d/data.csv")
    assert exists(str(path)) and exists(str(tmp_path / "d")) and exists(str(tmp_path / "d") + "/")
    assert not exists(str(path) + "/")
    assert not exists(str(tmp_path / "other.csv"))


def test_schema_location_follows_the_console_convention(tmp_path: Path, shared_datasets: Path) -> None:
    data = shared_datasets / "bank_marketing" / "data.csv"
    assert schema_location_for(str(data)) == str(data) + ".schema"
    assert exists(schema_location_for(str(data)))  # the datasets follow the convention
    folder = tmp_path / "prefix"
    folder.mkdir()
    assert schema_location_for(str(folder)) == f"{folder}/.schema"
    assert schema_location_for(f"{folder}/") == f"{folder}/.schema"
    assert schema_location_for(f"file://{folder}") == f"file://{folder}/.schema"
    assert schema_location_for("s3://bucket/path/to/data/") == "s3://bucket/path/to/data/.schema"


def test_schema_candidates_are_told_from_the_spelling_alone(tmp_path: Path) -> None:
    # Nothing exists at these locations and no S3 is running: the candidates need no store.
    assert schema_candidates("s3://bucket/in/a.csv") == [
        "s3://bucket/in/a.csv.schema",
        "s3://bucket/in/a.csv/.schema",
    ]
    assert schema_candidates("s3://bucket/in/") == ["s3://bucket/in/.schema"]
    assert schema_candidates("s3://bucket") == ["s3://bucket/.schema"]
    missing = tmp_path / "missing"
    assert schema_candidates(str(missing)) == [f"{missing}.schema", f"{missing}/.schema"]
    assert schema_candidates(f"file://{missing}/") == [f"file://{missing}/.schema"]
    # schema_location_for picks the candidate of what the location names.
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.csv").write_text("a\n")
    for name in ("folder", "file.csv"):
        assert schema_location_for(str(tmp_path / name)) in schema_candidates(str(tmp_path / name))


def test_atomic_write_replaces_the_file_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out" / "deeper" / "result.csv"
    with atomic_write(str(target)) as stream:
        stream.write(b"first\n")
        assert not target.exists()  # nothing appears before the block completes
        stream.write(b"second\n")
    assert target.read_bytes() == b"first\nsecond\n"
    with atomic_write(str(target)) as stream:
        stream.write(b"replacement\n")
        assert target.read_bytes() == b"first\nsecond\n"  # readers still see the old file
        # The temporary file is hidden, so a listing of the output folder never shows a partial file.
        assert [Path(ref.uri).name for ref in list_files(str(target.parent))] == ["result.csv"]
        assert len(os.listdir(target.parent)) == 2
    assert target.read_bytes() == b"replacement\n"
    assert os.listdir(target.parent) == ["result.csv"]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = make(tmp_path, "result.csv", b"old\n")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(str(target)) as stream:
        stream.write(b"partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["result.csv"]
    # The writer's own OSError passes through unchanged (it is not a failure to write the target).
    with pytest.raises(FileNotFoundError), atomic_write(str(target)):
        open(tmp_path / "missing-input")  # noqa: SIM115
    assert os.listdir(tmp_path) == ["result.csv"]


def test_atomic_write_when_the_writer_closes_the_stream(tmp_path: Path) -> None:
    target = tmp_path / "closed.csv"
    with atomic_write(f"file://{target}") as stream:
        stream.write(b"data\n")
        stream.close()
    assert target.read_bytes() == b"data\n"


def test_atomic_write_permissions_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        with atomic_write(str(tmp_path / "x.csv")) as stream:
            stream.write(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x.csv").stat().st_mode) == 0o640


def test_atomic_write_to_a_directory_is_refused(tmp_path: Path) -> None:
    for location in (str(tmp_path), str(tmp_path / "new") + "/"):
        with (
            pytest.raises(InvalidInputException, match=r"^cannot write '.*': it is a directory"),
            atomic_write(location),
        ):
            pass
    blocker = make(tmp_path, "file")
    with (
        pytest.raises(InvalidInputException, match=r"^cannot write '.*'"),
        atomic_write(str(blocker / "x.csv")),
    ):
        pass
    assert os.listdir(tmp_path) == ["file"]


class Refused(Exception):
    """What the test's write guard raises (as confinement's raises AccessDeniedException)."""


def test_guarded_writes_check_each_file_in_its_folder_as_opened(tmp_path: Path) -> None:
    """The write guard sees the file in its folder resolved as opened (a link followed), and the file is
    written in that folder even if its path is swapped for a link to elsewhere right after the check."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    checked: list[tuple[str, str]] = []

    def refuse_outside(path: str, named: str) -> None:
        checked.append((os.path.realpath(path), named))
        if os.path.realpath(path).startswith(str(outside)):
            raise Refused(f"{named} is outside")

    with guarded_writes(refuse_outside):
        for write in (
            lambda target: atomic_write(target).__enter__(),
            lambda target: publish_file(str(make(tmp_path, "made.gz")), target),
        ):
            with pytest.raises(Refused, match="is outside"):
                write(str(tmp_path / "linked" / "x.gz"))
    assert not any(outside.iterdir())
    assert checked[0] == (str(outside / "x.gz"), str(tmp_path / "linked" / "x.gz"))

    def swap_after_the_check(path: str, named: str) -> None:
        refuse_outside(path, named)
        folder = tmp_path / "out"
        folder.rename(tmp_path / "out-checked")
        folder.symlink_to(outside, target_is_directory=True)

    for number, write in enumerate(
        (
            lambda target: _write_through(atomic_write(target)),
            lambda target: publish_file(str(make(tmp_path, "made.gz")), target),
        )
    ):
        (tmp_path / "out").unlink(missing_ok=True)
        (tmp_path / "out").mkdir()
        with guarded_writes(swap_after_the_check):
            write(str(tmp_path / "out" / f"{number}.gz"))
        assert not any(outside.iterdir())
        assert (tmp_path / "out-checked" / f"{number}.gz").exists()
        (tmp_path / "out-checked" / f"{number}.gz").rename(tmp_path / f"kept-{number}.gz")
        (tmp_path / "out-checked").rmdir()


def test_missing_folders_are_made_one_level_at_a_time_through_the_guard(tmp_path: Path) -> None:
    """A write or a new folder below missing folders makes each in its parent as opened and checked: through
    a folder that is (or becomes, right after a check) a link to elsewhere, no folder is made there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)

    def refuse_outside(path: str, named: str) -> None:
        if os.path.realpath(path).startswith(str(outside)):
            raise Refused(f"{named} is outside")

    writes = (
        lambda target: _write_through(atomic_write(target)),
        lambda target: publish_file(str(make(tmp_path, "made.gz")), target),
        lambda target: make_folder(target + "/"),
    )
    for number, write in enumerate(writes):
        with guarded_writes(refuse_outside), pytest.raises(Refused, match="is outside"):
            write(str(tmp_path / "linked" / "a" / "b" / f"{number}.gz"))
        with guarded_here(refuse_outside, refuse_outside), pytest.raises(Refused, match="is outside"):
            write(str(tmp_path / "linked" / "c" / f"{number}.gz"))
    assert not any(outside.iterdir())

    def swap_after_the_first_check(path: str, named: str) -> None:
        refuse_outside(path, named)
        folder = tmp_path / "out"
        if not folder.is_symlink():
            folder.rename(tmp_path / "out-checked")
            folder.symlink_to(outside, target_is_directory=True)

    for number, write in enumerate(writes):
        (tmp_path / "out").unlink(missing_ok=True)
        (tmp_path / "out").mkdir()
        with guarded_here(refuse_outside, swap_after_the_first_check):
            write(str(tmp_path / "out" / "a" / "b" / f"{number}.gz"))
        assert not any(outside.iterdir())
        assert (tmp_path / "out-checked" / "a" / "b" / f"{number}.gz").exists()
        (tmp_path / "out-checked").rename(tmp_path / f"kept-{number}")


def _write_through(writer: object) -> None:
    with writer as stream:  # type: ignore[attr-defined]
        stream.write(b"data\n")


def test_a_requests_guards_are_its_own(tmp_path: Path) -> None:
    """``guarded_here`` checks one context's reads and writes only: another thread of the same server,
    serving another request, neither sees the checks nor has them ended under it."""
    import threading

    make(tmp_path, "a.csv")
    refused: list[str] = []

    def refuse(path: str, named: str) -> None:
        refused.append(named)
        raise Refused(f"{named} refused")

    entered, release = threading.Event(), threading.Event()
    seen_elsewhere: list[object] = []

    def other_request() -> None:
        entered.wait()
        with open_binary(str(tmp_path / "a.csv")) as stream:
            seen_elsewhere.append(stream.read())
        release.set()

    thread = threading.Thread(target=other_request)
    thread.start()
    with guarded_here(refuse, refuse):
        entered.set()
        release.wait()
        for use in (
            lambda: open_binary(str(tmp_path / "a.csv")),
            lambda: list_folder(str(tmp_path)),
            lambda: make_folder(str(tmp_path / "new") + "/"),
            lambda: delete(str(tmp_path / "a.csv")),
        ):
            with pytest.raises(Refused):
                use()
    thread.join()
    assert seen_elsewhere == [b"a,b\n"]
    assert (tmp_path / "a.csv").exists() and not (tmp_path / "new").exists()
    assert len(refused) == 4


class _Refused(BaseException):
    """What a job's commit raises once its attempt no longer holds the job (``JobStopped``)."""


def test_a_refused_commit_leaves_the_file_there_and_no_temporary(tmp_path: Path) -> None:
    """The rename that makes a written or published file appear runs through the writer's ``commit``:
    refused, the file already at the location stays as it was and no temporary is left beside it."""

    def refuse(step: object) -> None:
        raise _Refused

    target = tmp_path / "out" / "result.gz"
    target.parent.mkdir()
    target.write_bytes(b"the next attempt's")
    with pytest.raises(_Refused), atomic_write(str(target), refuse) as stream:
        stream.write(b"stale")
    made = make(tmp_path, "made.gz")
    with pytest.raises(_Refused):
        publish_file(str(made), str(target), refuse)
    assert sorted(os.listdir(target.parent)) == ["result.gz"] and target.read_bytes() == b"the next attempt's"
    assert made.exists()  # still the run's own, removed with its temporary folder


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer, for ever: a schema, recipe or sample location naming
    one held its request's thread or its job. Refused at once, as not a regular file. (The test holds the
    FIFO open itself: an open that does not refuse it then returns a stream rather than hangs.)"""
    fifo = tmp_path / "recipe.json"
    os.mkfifo(fifo)
    keeper = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        refusal = rf"^RecipeUri '{fifo}' cannot be read: not a regular file \(a FIFO, socket or device\)$"
        with pytest.raises(InvalidInputException, match=refusal):
            open_binary(str(fifo), what="RecipeUri").close()
        # The same through a request's guard (the path checked, then the descriptor as opened).
        with guarded_here(lambda *_: None, None), pytest.raises(InvalidInputException, match="not a regular"):
            open_binary(f"file://{fifo}", what="SampleLocation").close()
    finally:
        os.close(keeper)
    assert read_text(str(make(tmp_path, "plain.json", b'{"a": 1}'))) == '{"a": 1}'
