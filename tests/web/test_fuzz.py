"""Fuzzing the API: over 10,000 requests shaped from botocore's model of Amazon ML, never a 500.

Requests are drawn from each operation's input shape: random subsets of the members, values of the right
type (ids from a small pool, so that objects get created, changed and deleted), of the wrong type, out of
range or off pattern, plus the extension operations and garbage targets and bodies. Every answer must be a
well-formed JSON error of a known type with a 4xx status, or a 200; never a 500 nor a traceback. Afterwards
the metastore must agree with what the fuzzer was told: every object it created exists, and exactly the
ones it deleted are DELETED.

Most requests go straight to the ASGI app (no sockets: fast); a smaller run, SigV4-signed, goes to the real
uvicorn server over one keep-alive connection.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from web_helpers import RawResponse, asgi_request, connect, post, sign

from emrml.config import Settings
from emrml.errors import ERROR_TYPES
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML
from emrml.service.groups import ADMINS
from emrml.service.identity import Identities
from emrml.service.operations import CREATE_OPERATIONS, ID_MEMBER, registered
from emrml.web.protocol import TARGET_PREFIX
from emrml.web.server import BackgroundServer, create_app, reserve_socket

pytestmark = pytest.mark.slow

MODEL = botocore.session.get_session().get_service_model("machinelearning")
EXTENSIONS = (
    "GetDataSourceStatistics",
    "GetMLModelInsights",
    "GetMLModelInputs",
    "GetEvaluationInsights",
    "InferDataSchema",
)
KNOWN_ERRORS = set(ERROR_TYPES)
IN_PROCESS_BATCHES, BATCH_SIZE = 104, 100
OVER_HTTP_BATCHES = 10
ID_POOL = ("fz-ds", "fz-model", "fz-a", "fz-b", "fz-c", "fz.d_1", "fz-evaluation")
BANK_COLUMNS = bank_sample_schema().names
#: Characters for generated strings: a few of each kind that matters (letters of several scripts, digits,
#: spaces, punctuation the patterns allow or forbid, quotes and backslashes, a control character, an emoji).
#: A fixed alphabet draws much faster than Hypothesis's full Unicode text.
ALPHABET = "aZ09 _-.:/=+@!#'\"\\\t\u00e9\u4e2d\u00a0\u2028\U0001f600"


def text(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(alphabet=ALPHABET, min_size=min_size, max_size=max_size)


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text()
TAG_TEXT = st.text(alphabet="aZ09 _.:/=+-@\u00e9\u4e2d\u00a0", max_size=20)


@dataclass
class FuzzWorld:
    """The fuzzed service, with one trained model behind a READY real-time endpoint."""

    service: EmrML
    data: Path
    documents: dict[str, list[str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzWorld]:
    home = tmp_path_factory.mktemp("fuzz")
    data = write_bank_sample(home / "bank.csv", 400)
    schema = bank_sample_schema().to_json()
    # Every folder is a data root (locations are fuzzed anywhere); the home's own files stay refused.
    settings = Settings.load(
        environ={}, home=home, public_url="http://127.0.0.1:8080", data_roots=(Path("/"),)
    )
    service = EmrML(settings)
    service.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "fz-ds",
            "DataSpec": {"DataLocationS3": str(data), "DataSchema": schema},
            "ComputeStatistics": True,
        },
    )
    service.call(
        "CreateMLModel", {"MLModelId": "fz-model", "MLModelType": "BINARY", "TrainingDataSourceId": "fz-ds"}
    )
    assert service.wait("MLModel", "fz-model")["Status"] == "COMPLETED"
    if "CreateRealtimeEndpoint" in registered():
        service.call("CreateRealtimeEndpoint", {"MLModelId": "fz-model"})
    documents = {
        "DataSchema": [schema, '{"version": "1.0"}', "{not json"],
        "Recipe": ['{"outputs": ["ALL_CATEGORICAL", "ALL_NUMERIC"]}', '{"outputs": ["nonsense(x)"]}', "[]"],
        "DataRearrangement": [
            json.dumps({"splitting": {"percentBegin": 0, "percentEnd": 50}}),
            json.dumps({"splitting": {"percentBegin": 90, "percentEnd": 10}}),
            "{",
        ],
    }
    yield FuzzWorld(service, data, documents)
    service.close()


# ---------------------------------------------------------------------------------------------- strategies


#: Weighted options: (weight, strategy) pairs. The helpers below build mixtures rather than strategies, so
#: that a choice among choices (a member's value: mostly of its type, itself a choice among kinds of value)
#: is flattened into one draw from one table: each level of choice costs Hypothesis a draw of its own, and
#: drawing 10,000 requests is most of the fuzz's time.
Mixture = tuple[tuple[int, st.SearchStrategy[Any]], ...]


def mix(*options: tuple[int, st.SearchStrategy[Any] | Mixture]) -> Mixture:
    """The options in proportion to their weights, a nested mixture's options sharing its weight in the
    proportions of their own (the same probabilities as drawing the option, then from it)."""
    inner_totals = [sum(w for w, _ in option) for _, option in options if isinstance(option, tuple)]
    scale = math.lcm(*inner_totals) if inner_totals else 1
    leaves: list[tuple[int, st.SearchStrategy[Any]]] = []
    for weight, option in options:
        if isinstance(option, tuple):
            total = sum(w for w, _ in option)
            leaves.extend((weight * w * scale // total, strategy) for w, strategy in option)
        else:
            leaves.append((weight * scale, option))
    divisor = math.gcd(*(w for w, _ in leaves))
    return tuple((w // divisor, strategy) for w, strategy in leaves)


def weighted(*options: tuple[int, st.SearchStrategy[Any] | Mixture]) -> st.SearchStrategy[Any]:
    """Draw from each option in proportion to its weight (``st.one_of`` picks branches evenly)."""
    table = [strategy for weight, strategy in mix(*options) for _ in range(weight)]
    if len(table) == 1:
        return table[0]
    # One integer picks the option: cheaper than sampled_from, which checks its elements at every draw.
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def any_json(levels: int = 3) -> st.SearchStrategy[Any]:
    """Any JSON value: a leaf, or a list or an object of at most ``levels`` levels, each kind at each level as
    likely as a leaf. That is what ``st.recursive(JSON_LEAF, lists | dictionaries)`` draws, unrolled: it
    spares Hypothesis the count of leaves it keeps for st.recursive, and its redraws of values with too many.
    """
    options: list[tuple[int, st.SearchStrategy[Any]]] = [(1, JSON_LEAF)]
    for _ in range(levels):
        children = weighted(*options)
        dictionaries = st.dictionaries(text(max_size=8), children, max_size=3)
        options += [(1, st.lists(children, max_size=3)), (1, dictionaries)]
    return weighted(*options)


ANY_JSON = any_json()


def mapped(mixture: Mixture, function: Any) -> Mixture:
    return tuple((weight, strategy.map(function)) for weight, strategy in mixture)


def _right_string(shape: Shape, world: FuzzWorld) -> Mixture:
    name, metadata = shape.name, shape.metadata
    if shape.enum:
        return mix((1, st.sampled_from(shape.enum)))
    if name == "EntityId":
        random_ids = st.text(alphabet="azAZ09_.-", min_size=1, max_size=64)
        return mix((6, st.sampled_from(ID_POOL)), (1, random_ids), (1, text(max_size=70)))
    if name in world.documents:
        return mix((1, st.sampled_from(world.documents[name])), (1, text(max_size=30)))
    if name == "S3Url":
        # Never s3:// (no object store is configured) nor arbitrary local paths (they would be read).
        safe = [str(world.data), "/nonexistent/data.csv", "file:///nonexistent/x.csv", "/nonexistent/dir/"]
        missing = text(max_size=20).map(lambda value: "/nonexistent/" + value)
        return mix((1, st.sampled_from(safe)), (1, missing))
    if name in ("TagKey", "TagValue"):
        return mix((1, TAG_TEXT), (1, st.just("aws:reserved")), (1, text(max_size=6)))
    if name == "VipURL":
        return mix(
            (1, st.sampled_from([world.service.settings.public_url, "https://realtime.amazonaws.com"]))
        )
    if name == "VariableName":
        return mix((1, st.sampled_from(BANK_COLUMNS)), (1, text(max_size=8)))
    if name == "StringType":
        keys = ["sgd.maxPasses", "sgd.shuffleType", "sgd.l1RegularizationAmount", "sgd.maxMLModelSizeInBytes"]
        values = st.sampled_from([*keys, "auto", "none", "5", "-1", "1e-6", "abc"])
        return mix((1, values), (1, text(max_size=8)))
    pattern = metadata.get("pattern")
    low, high = metadata.get("min", 0), metadata.get("max", 40)
    fitting = text(min_size=low, max_size=min(high, 24))
    character_class = re.fullmatch(r"(\[[^\]]+\])\+", pattern or "")
    if character_class:
        # Patterns like [a-z0-9-]+: drawing from the class's characters is much faster than from_regex.
        alphabet = [c for c in map(chr, range(32, 127)) if re.fullmatch(character_class.group(1), c)]
        fitting = st.text(alphabet=alphabet, min_size=max(low, 1), max_size=min(high, 24))
    if high > 300:
        return mix((6, fitting), (1, text()))
    return mix((6, fitting), (1, text()), (1, text(min_size=high + 1, max_size=high + 3)))


def _right(shape: Shape, world: FuzzWorld, depth: int) -> Mixture:
    kind = shape.type_name
    if kind == "structure":
        members = {name: value_for(member, world, depth + 1) for name, member in shape.members.items()}
        required = {name: members[name] for name in shape.required_members}
        optional = {name: strategy for name, strategy in members.items() if name not in required}
        complete = st.fixed_dictionaries(required, optional=optional)
        partial = st.fixed_dictionaries({}, optional=members)
        extra = st.fixed_dictionaries({"UnknownMember": JSON_LEAF}, optional=members)
        return mix((8, complete), (1, partial), (1, extra))
    if kind == "string":
        return _right_string(shape, world)
    if kind in ("integer", "long"):
        low, high = shape.metadata.get("min", -5), shape.metadata.get("max", 10**6)
        return mix((1, st.integers(low - 1, high + 1)), (1, st.integers()))
    if kind in ("float", "double"):
        return mix((1, st.floats(-0.5, 1.5)), (1, st.floats(allow_nan=True, allow_infinity=True)))
    if kind == "boolean":
        return mix((1, st.booleans()))
    if kind == "timestamp":
        return mix((1, st.floats(0, 2e9)))
    if kind == "list":
        return mix((1, st.lists(value_for(shape.member, world, depth + 1), max_size=4)))
    if kind == "map":
        keys = weighted((1, _right(shape.key, world, depth + 1)))
        return mix((1, st.dictionaries(keys, value_for(shape.value, world, depth + 1), max_size=5)))
    return mix((1, ANY_JSON))


def value_for(shape: Shape, world: FuzzWorld, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly values of the shape's type (often valid), sometimes any JSON value at all."""
    return weighted((12, _right(shape, world, depth)), (1, ANY_JSON))


def api_requests(world: FuzzWorld, garbage: bool) -> st.SearchStrategy[tuple[str, bytes]]:
    """(X-Amz-Target, body) pairs: modelled operations, extensions, and (if ``garbage``) anything."""
    # Each operation equally likely, then its request's kind (complete, partial, with an unknown member).
    modelled = mix(
        *(
            (
                1,
                mapped(
                    _right(MODEL.operation_model(name).input_shape, world, 0),
                    lambda request, name=name: (TARGET_PREFIX + name, json.dumps(request).encode()),
                ),
            )
            for name in sorted(MODEL.operation_names)
        )
    )
    extension_members = st.sampled_from(
        [
            "DataSourceId",
            "MLModelId",
            "EvaluationId",
            "DataLocationS3",
            "TargetAttributeName",
            "RowId",
            "DataFileContainsHeader",
        ]
    )
    extension_values = st.sampled_from([*ID_POOL, str(world.data), "/nonexistent/x.csv", "y"]) | JSON_LEAF
    extension = st.tuples(
        st.sampled_from(EXTENSIONS).map(lambda name: TARGET_PREFIX + name),
        st.dictionaries(extension_members, extension_values, max_size=4).map(
            lambda body: json.dumps(body).encode()
        ),
    )
    if not garbage:
        return weighted((12, modelled), (1, extension))
    printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    junk_body = st.tuples(printable | st.just(TARGET_PREFIX + "GetMLModel"), st.binary(max_size=64))
    junk_json = st.tuples(
        st.sampled_from(sorted(MODEL.operation_names)).map(lambda name: TARGET_PREFIX + name),
        ANY_JSON.map(lambda value: json.dumps(value).encode()),
    )
    return weighted((12, modelled), (1, extension), (1, junk_body), (1, junk_json))


# ---------------------------------------------------------------------------------------------- checks


_TRACEBACK = re.compile(rb'Traceback|File "|\.py", line')
_CREATES = CREATE_OPERATIONS
_DELETES = {f"Delete{kind}": kind for kind in ID_MEMBER}


@dataclass
class Ledger:
    """What the fuzzer was told: objects created and deleted, and how many requests were answered."""

    created: set[tuple[str, str]] = field(default_factory=set)
    deleted: set[tuple[str, str]] = field(default_factory=set)
    answered: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def check(self, target: str, body: bytes, response: RawResponse) -> None:
        context = f"{target} {body[:300]!r} -> {response.status} {response.body[:300]!r}"
        assert response.status in (200, 400, 413), context
        assert not _TRACEBACK.search(response.body), context
        answer = response.json()
        assert isinstance(answer, dict), context
        if response.status != 200:
            assert set(answer) == {"__type", "message"} and answer["__type"] in KNOWN_ERRORS, context
        self.answered += 1
        self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        operation = target.removeprefix(TARGET_PREFIX)
        if response.status == 200 and (operation in _CREATES or operation in _DELETES):
            request = json.loads(body)
            kind = _CREATES.get(operation) or _DELETES[operation]
            entry = (kind, request[ID_MEMBER[kind]])
            (self.created if operation in _CREATES else self.deleted).add(entry)


def _all_ids(service: EmrML, kind: str, **filters: str) -> set[str]:
    found: set[str] = set()
    request: dict[str, Any] = dict(filters)
    while True:
        page = service.call(f"Describe{kind}s", request)
        found |= {item[ID_MEMBER[kind]] for item in page["Results"]}
        if "NextToken" not in page:
            return found
        request["NextToken"] = page["NextToken"]


def assert_metastore_agrees(service: EmrML, ledger: Ledger) -> None:
    for kind in ID_MEMBER:
        created = {entity_id for k, entity_id in ledger.created if k == kind}
        deleted = {entity_id for k, entity_id in ledger.deleted if k == kind}
        live = _all_ids(service, kind)
        gone = _all_ids(service, kind, FilterVariable="Status", EQ="DELETED")
        assert live.isdisjoint(gone)
        assert created - deleted <= live, kind
        assert deleted <= gone, kind
        assert (live | gone) - created <= {"fz-ds", "fz-model"}, kind
    # And the service still takes new work.
    fresh = {"DataSourceId": "fz-after", "DataSpec": {"DataLocationS3": "/nonexistent/after.csv"}}
    assert service.call("CreateDataSourceFromS3", fresh) == {"DataSourceId": "fz-after"}
    assert service.call("GetDataSource", {"DataSourceId": "fz-after"})["Status"] == "PENDING"


# ---------------------------------------------------------------------------------------------- runs

# Derandomized: CI fuzzes the same 10,400 requests every run, so a failure is reproducible.
FUZZ_SETTINGS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def test_fuzz_in_process_never_fails_the_server(world: FuzzWorld) -> None:
    app = create_app(world.service, auth=False)
    ledger = Ledger()
    loop = asyncio.new_event_loop()

    async def send_all(batch: list[tuple[str, bytes]]) -> None:
        for target, body in batch:
            headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
            ledger.check(target, body, await asgi_request(app, headers, body))

    @settings(FUZZ_SETTINGS, max_examples=IN_PROCESS_BATCHES)
    @given(batch=st.lists(api_requests(world, garbage=True), min_size=BATCH_SIZE, max_size=BATCH_SIZE))
    def fuzz(batch: list[tuple[str, bytes]]) -> None:
        loop.run_until_complete(send_all(batch))

    try:
        fuzz()
    finally:
        loop.close()
    assert ledger.answered >= 10_000
    # The fuzzer must reach past validation: some requests succeed, some create and delete objects. How
    # many succeed depends on how far the world's jobs have run when each request comes (a Get of statistics,
    # a Delete), so the same requests give 470-510 successes from run to run: the bound leaves room for that.
    assert ledger.statuses.get(200, 0) > 400 and ledger.created and ledger.deleted
    assert_metastore_agrees(world.service, ledger)


def test_fuzz_signed_over_http(world: FuzzWorld) -> None:
    identities = Identities(world.service.sessions, world.service.settings.home)
    identities.create_user("fuzzer", groups=(ADMINS,))  # every operation, so the fuzz reaches them
    key = identities.create_key("fuzzer")
    sock = reserve_socket()
    ledger = Ledger()
    with BackgroundServer(create_app(world.service), sock) as server:
        connection = connect(server.url)

        @settings(FUZZ_SETTINGS, max_examples=OVER_HTTP_BATCHES)
        @given(batch=st.lists(api_requests(world, garbage=False), min_size=BATCH_SIZE, max_size=BATCH_SIZE))
        def fuzz(batch: list[tuple[str, bytes]]) -> None:
            for target, body in batch:
                operation = target.removeprefix(TARGET_PREFIX)
                headers = sign(server.url, operation, body, key.access_key_id, key.secret_access_key)
                ledger.check(target, body, post(server.url, headers, body, connection))

        try:
            fuzz()
        finally:
            connection.close()
    assert ledger.answered == OVER_HTTP_BATCHES * BATCH_SIZE
    assert ledger.statuses.get(200, 0) > 20
