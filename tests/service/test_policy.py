"""Statements and their evaluation (service.policy): the SQL filter of Describe* agrees with the decision of
Get* on every object, deny wins, patterns behave as IAM's."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, select

from emrml.errors import InvalidInputException
from emrml.service.access_rules import known_actions
from emrml.service.policy import Policy, Statement, glob_regex, residual_patterns

CALLER = "arn:aws:iam::000000000000:user/bob"
OTHER = "arn:aws:iam::000000000000:user/ann"
IDS = ["ml-1", "ml-2", "ml_x", "ml%y", "mlx", "other", "ds-1", "ml-1-old", "a*b"]


def parse(document: dict[str, object], sid: int = 1) -> Statement:
    return Statement.parse(document, sid, known_actions())


@pytest.mark.parametrize(
    ("pattern", "prefix", "rests"),
    [
        ("*", "mlmodel/", {"*", ""}),
        ("mlmodel/ml-*", "mlmodel/", {"ml-*"}),
        ("datasource/*", "mlmodel/", set()),
        ("*/ml-?", "mlmodel/", {"*/ml-?", "/ml-?", "ml-?"}),
        ("ml?odel/*", "mlmodel/", {"*", ""}),
        ("mlmodel", "mlmodel/", set()),
    ],
)
def test_residual_patterns(pattern: str, prefix: str, rests: set[str]) -> None:
    assert residual_patterns(pattern, prefix) == rests


STATEMENT_SETS = [
    [{"Effect": "Allow", "Action": "Describe*", "Resource": "*"}],
    [{"Effect": "Allow", "Action": "Describe*", "Resource": "*", "Owner": "self"}],
    [{"Effect": "Allow", "Action": "*", "Resource": "mlmodel/ml-?"}],
    [{"Effect": "Allow", "Action": "machinelearning:*", "Resource": ["mlmodel/ml_*", "mlmodel/ml%*"]}],
    [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "DescribeMLModels",
            "Resource": "arn:aws:machinelearning:*:*:mlmodel/ml-1*",
        },
    ],
    [
        {"Effect": "Allow", "Action": "Describe*", "Resource": "*/a*"},
        {"Effect": "Deny", "Action": "*", "Resource": "*", "Owner": "self"},
    ],
    [{"Effect": "Allow", "Action": "Get*", "Resource": "*"}],
    [{"Effect": "Allow", "Action": "DescribeMLModels", "Resource": "datasource/*"}],
]


@pytest.mark.parametrize("documents", STATEMENT_SETS)
def test_the_describe_filter_agrees_with_the_decision_on_each_object(
    documents: list[dict[str, object]],
) -> None:
    table = Table("objects", MetaData(), Column("id", String), Column("created_by", String))
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    rows = [{"id": object_id, "created_by": owner} for object_id in IDS for owner in (CALLER, OTHER)]
    rows = [
        {"id": f"{r['id']}{'' if r['created_by'] == CALLER else '+'}", **{"created_by": r["created_by"]}}
        for r in rows
    ]
    policy = Policy("bob", CALLER, True, [parse(d, n) for n, d in enumerate(documents, 1)])
    condition = policy.visible("machinelearning:DescribeMLModels", "MLModel", table.c.id, table.c.created_by)
    with engine.begin() as connection:
        connection.execute(insert(table), rows)
        listed = set(connection.scalars(select(table.c.id).where(condition)))
    expected = {
        r["id"]
        for r in rows
        if policy.allows("machinelearning:DescribeMLModels", f"mlmodel/{r['id']}", r["created_by"] == CALLER)
    }
    assert listed == expected


def test_deny_wins_and_nothing_is_allowed_by_default() -> None:
    allow = parse({"Effect": "Allow", "Action": "Get*"})
    deny = parse({"Effect": "Deny", "Action": "GetMLModel", "Resource": "mlmodel/secret-*"}, 2)
    policy = Policy("bob", CALLER, True, [allow, deny])
    assert policy.allows("machinelearning:GetMLModel", "mlmodel/public", False)
    assert not policy.allows("machinelearning:GetMLModel", "mlmodel/secret-1", False)
    assert not policy.allows("machinelearning:DeleteMLModel", "mlmodel/public", True)
    assert not Policy("bob", CALLER, False, [allow]).allows("machinelearning:GetMLModel", "mlmodel/x", True)
    assert policy.allows("machinelearning:getmlmodel", "mlmodel/public", False)  # actions ignore case


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "JSON object"),
        ({"Effect": "Maybe", "Action": "*"}, "Effect must be Allow or Deny"),
        ({"Effect": "Allow"}, "Action must be"),
        ({"Effect": "Allow", "Action": "Predikt"}, "matches no action"),
        ({"Effect": "Allow", "Action": "s3:GetObject"}, "matches no action"),
        ({"Effect": "Allow", "Action": "Predict", "Owner": "me"}, "Owner must be"),
        ({"Effect": "Allow", "Action": "Predict", "Resource": []}, "Resource must be"),
        ({"Effect": "Allow", "Action": "Predict", "Condition": {}}, "unknown statement member 'Condition'"),
        ({"Effect": "Allow", "Action": "Predict", "Resource": "arn:aws:s3:::bucket/*"}, "an ARN must be"),
    ],
)
def test_bad_statements_are_refused_with_the_member_at_fault(document: object, message: str) -> None:
    with pytest.raises(InvalidInputException, match=message):
        parse(document)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("storage:Read", "relative/*"),
        ("storage:*", ["s3://team/*", "data/*"]),
        ("storage:Write", "file:///srv/out/*"),
        ("Storage:Re?d", "S3://team/*"),
    ],
)
def test_a_storage_grant_on_what_no_location_can_be_is_refused(action: str, resource: object) -> None:
    # Locations are checked absolute (local paths resolved) or as s3:// and kinesis:// URIs: such a
    # statement used to be accepted and could never match anything.
    with pytest.raises(
        InvalidInputException, match=r"Resource '(relative|data|file|S3).*' can match no location"
    ):
        parse({"Effect": "Allow", "Action": action, "Resource": resource})


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("storage:Read", ["/srv/data/*", "s3://team/*", "kinesis://in-*", "*", "?srv/*", "s3*"]),
        # Patterns for the statement's other actions are no locations.
        (["storage:Read", "GetDataSource"], "datasource/*"),
        ("*", "datasource/*"),
    ],
)
def test_storage_grants_on_locations_are_accepted(action: object, resource: object) -> None:
    parse({"Effect": "Allow", "Action": action, "Resource": resource})


@pytest.mark.parametrize(
    ("action", "resource", "message"),
    [
        (
            "Predict",
            "model/ml-churn",
            "Resource 'model/ml-churn' can match no object: machinelearning actions",
        ),
        ("Describe*", ["mlmodel/*", "ml-*"], "Resource 'ml-\\*' can match no object"),
        ("Delete*", "MLModel/*", "Resource 'MLModel/\\*' can match no object"),
        ("iam:GetUser", "bob", "Resource 'bob' can match no user or group: iam actions act on users"),
        ("*", "relative/*", "Resource 'relative/\\*' can match no resource of its actions: iam .*; storage"),
        ("storage:Read", "s3://team/data/../x/*", "can match no location: it has a '.' or '..' segment"),
        ("storage:Write", "/srv/./out/*", "can match no location: it has a '.' or '..' segment"),
        ("storage:Read", "/srv/data/..", "can match no location: it has a '.' or '..' segment"),
    ],
)
def test_a_statement_on_what_none_of_its_actions_act_on_is_refused(
    action: str, resource: object, message: str
) -> None:
    # A typo such as model/ for mlmodel/ was accepted: a Deny then denied nothing, without a word.
    with pytest.raises(InvalidInputException, match=message):
        parse({"Effect": "Deny", "Action": action, "Resource": resource})


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("Predict", ["mlmodel/ml-*", "arn:aws:machinelearning:us-east-1:000000000000:mlmodel/x", "*", "?l*"]),
        ("iam:*", ["user/bob", "group/*", "*"]),
        ("storage:Read", ["/srv/data/.hidden/*", "s3://team/..data/*", "s3://team/*/.*"]),
        (["Get*", "iam:GetUser"], ["datasource/*", "user/bob"]),
    ],
)
def test_statements_on_what_their_actions_act_on_are_accepted(action: object, resource: object) -> None:
    parse({"Effect": "Allow", "Action": action, "Resource": resource})


def _globbed(pattern: str, text: str) -> bool:
    """What a pattern means, by the definition: ``*`` any run of characters, ``?`` one, others themselves."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(text)
        if pattern[i] == "*":
            return match(i + 1, j) or (j < len(text) and match(i, j + 1))
        return j < len(text) and pattern[i] in ("?", text[j]) and match(i + 1, j + 1)

    return match(0, 0)


@given(st.text(alphabet="ab/*?", max_size=10), st.text(alphabet="ab/", max_size=12))
def test_patterns_match_what_they_mean(pattern: str, text: str) -> None:
    assert (glob_regex(pattern).fullmatch(text) is not None) == _globbed(pattern, text)


def test_a_long_location_is_decided_at_once_whatever_the_stars_of_the_statements() -> None:
    # A caller names the location: "s3://a/a/a/..." against several stars made the regular expression
    # engine try every way of splitting it among them (this one would have run for years).
    statements = [
        parse({"Effect": "Allow", "Action": "storage:Read", "Resource": "s3://*"}, 1),
        parse({"Effect": "Deny", "Action": "storage:Read", "Resource": "s3://*/*/*/*/*/*/private/*"}, 2),
    ]
    policy = Policy("bob", CALLER, True, statements)
    location = "s3://bucket/" + "a/" * 1000 + "data.csv"
    assert policy.allows("storage:Read", location, False)
    assert not policy.allows("storage:Read", location.replace("a/a/a/a/a/a/", "a/a/a/a/a/private/", 1), False)


def test_granted_folders_are_where_the_allows_of_an_action_start() -> None:
    resources = ["/srv/data/results/*", "/srv/a/b*/c", "s3://bucket/pre*", "*", "s3://*", "/srv/file.csv"]
    statements = [
        parse({"Effect": "Allow", "Action": "storage:Read", "Resource": resources}),
        parse({"Effect": "Allow", "Action": "storage:Write", "Resource": "/srv/out/*"}, 2),
        parse({"Effect": "Deny", "Action": "storage:Read", "Resource": "/srv/denied/*"}, 3),
    ]
    policy = Policy("bob", CALLER, True, statements)
    expected = ["/srv/", "/srv/a/", "/srv/data/results/", "s3://bucket/"]
    assert policy.granted_folders("storage:Read") == expected
    assert policy.granted_folders("storage:Write") == ["/srv/out/"]
    assert Policy("bob", CALLER, False, statements).granted_folders("storage:Read") == []
