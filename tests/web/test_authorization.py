"""Who may do what, probed through boto3 against the real server: groups, owners, deny, storage, disabled
users (service.access, service.policy)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from botocore.exceptions import ClientError
from web_helpers import LiveServer

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.access import Access
from emrml.service.access_rules import OPERATION_ACCESS
from emrml.service.app import EmrML
from emrml.service.auth import ensure_admin
from emrml.service.groups import ADMINS, PREDICTORS, USERS, VIEWERS
from emrml.service.identity import Identities
from emrml.service.operations import registered


@pytest.fixture(scope="module")
def owned(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A datasource and a model with a real-time endpoint, created by the root (not by the users below)."""
    tag = uuid.uuid4().hex[:8]
    sample = write_bank_sample(tmp_path_factory.mktemp("authz") / "bank.csv", 400)
    service = live_server.service
    source, model = f"ds-root-{tag}", f"ml-root-{tag}"
    spec = {"DataLocationS3": str(sample), "DataSchema": bank_sample_schema().to_json()}
    service.call(
        "CreateDataSourceFromS3", {"DataSourceId": source, "DataSpec": spec, "ComputeStatistics": True}
    )
    service.call(
        "CreateMLModel", {"MLModelId": model, "MLModelType": "BINARY", "TrainingDataSourceId": source}
    )
    bare = f"ml-bare-{tag}"  # trained, without a real-time endpoint
    service.call(
        "CreateMLModel", {"MLModelId": bare, "MLModelType": "BINARY", "TrainingDataSourceId": source}
    )
    service.wait("MLModel", model)
    service.wait("MLModel", bare)
    endpoint = service.call("CreateRealtimeEndpoint", {"MLModelId": model})["RealtimeEndpointInfo"]
    return {
        "source": source,
        "model": model,
        "bare": bare,
        "endpoint": endpoint["EndpointUrl"],
        "sample": str(sample),
    }


@pytest.fixture
def user(live_server: LiveServer) -> Iterator[Any]:
    """A new user (groups chosen by the test, ``users`` by default) and a boto3 client signing as it."""
    made: list[str] = []

    def make(groups: tuple[str, ...] = (USERS,)) -> Any:
        name = f"u-{uuid.uuid4().hex[:8]}"
        live_server.service.access.create_user(name, groups)
        key = live_server.identities.create_key(name)
        made.append(name)
        client = live_server.client(key.access_key_id, key.secret_access_key)
        client.user_name = name
        return client

    yield make
    for name in made:
        live_server.service.access.delete_user(name)


def denied(call: Any, **request: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**request)
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException", raised.value.response
    return str(raised.value.response["Error"]["Message"])


def predict_request(owned: dict[str, str]) -> dict[str, Any]:
    return {"MLModelId": owned["model"], "Record": {"age": "40"}, "PredictEndpoint": owned["endpoint"]}


def test_every_operation_has_an_authorization_rule() -> None:
    assert set(registered()) <= set(OPERATION_ACCESS)


def test_a_statement_may_name_every_operation_before_the_operations_are_imported() -> None:
    # A process that adds a statement (``emrml access add-statement``) has run no operation: their modules
    # are not imported, and what a statement may name must not depend on them.
    code = "from emrml.service.access_rules import known_actions; print(' '.join(known_actions()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert {f"machinelearning:{name}" for name in registered()} <= set(result.stdout.split())


def answer(call: Any, **request: Any) -> tuple[str, str]:
    """The error code and message of a refused call."""
    with pytest.raises(ClientError) as raised:
        call(**request)
    return raised.value.response["Error"]["Code"], str(raised.value.response["Error"]["Message"])


def test_a_user_sees_and_touches_nothing_of_others(
    live_server: LiveServer, user: Any, owned: dict[str, str]
) -> None:
    bob = user()
    # Another user's object he may not read is answered as an id of no object would be: a refusal would
    # tell him it exists, and he could probe the ids of everyone's objects.
    nope = f"ml-nope-{uuid.uuid4().hex[:8]}"
    probes = [
        (bob.get_data_source, {"DataSourceId": owned["source"]}),
        (bob.update_data_source, {"DataSourceId": owned["source"], "DataSourceName": "mine now"}),
        (bob.delete_ml_model, {"MLModelId": owned["model"]}),
        (bob.get_ml_model, {"MLModelId": owned["bare"]}),
        (bob.predict, predict_request(owned)),
        # A model without an endpoint: why it cannot answer is not his to know either.
        (bob.predict, {**predict_request(owned), "MLModelId": owned["bare"]}),
        (bob.describe_tags, {"ResourceId": owned["model"], "ResourceType": "MLModel"}),
        (bob.create_realtime_endpoint, {"MLModelId": owned["model"]}),
        # Using another's datasource to train, the same: no such datasource.
        (
            bob.create_ml_model,
            {
                "MLModelId": f"ml-{bob.user_name}",
                "MLModelType": "BINARY",
                "TrainingDataSourceId": owned["source"],
            },
        ),
    ]
    for call, request in probes:
        taken = next(
            value for key, value in request.items() if key.endswith("Id") and value in owned.values()
        )
        member = next(key for key, value in request.items() if value == taken)
        code, message = answer(call, **request)
        missing_code, missing_message = answer(call, **{**request, member: nope})
        assert (code, message) == (missing_code, missing_message.replace(nope, taken)), call
        assert code in ("ResourceNotFoundException", "InvalidInputException"), (call, code)
    # An invalid request is refused as invalid for both: the order of the checks tells nothing either.
    arn = f"arn:aws:iam::{live_server.service.settings.account_id}:user/{bob.user_name}"
    refusals = []
    for source_id in (owned["source"], nope):
        with pytest.raises(InvalidInputException) as invalid:
            live_server.service.call(
                "UpdateDataSource", {"DataSourceId": source_id, "DataSourceName": 5}, caller=arn
            )
        refusals.append(invalid.value.message)
    assert refusals[0] == refusals[1] and "DataSourceName" in refusals[0]
    # Refused, and untouched.
    source = live_server.service.call("GetDataSource", {"DataSourceId": owned["source"]})
    assert source.get("Name") != "mine now" and source["Status"] != "DELETED"
    assert live_server.service.call("GetMLModel", {"MLModelId": owned["model"]})["Status"] == "COMPLETED"
    # Listing is allowed, and lists none of the others' objects.
    assert bob.describe_data_sources()["Results"] == []
    assert bob.describe_ml_models()["Results"] == []


def test_who_may_read_an_object_is_refused_what_it_may_not_do(user: Any, owned: dict[str, str]) -> None:
    # A viewer knows the object exists: refusing it tells nothing new.
    viewer = user((VIEWERS,))
    message = denied(viewer.delete_ml_model, MLModelId=owned["model"])
    assert f"user/{viewer.user_name} is not authorized to perform: machinelearning:DeleteMLModel" in message
    assert f"mlmodel/{owned['model']}" in message
    # A user whose groups allow the operation on nothing is refused whether the object exists or not.
    predictor = user((PREDICTORS,))
    assert answer(predictor.get_data_source, DataSourceId=owned["source"])[0] == "AccessDeniedException"
    assert answer(predictor.get_data_source, DataSourceId="ds-nope")[0] == "AccessDeniedException"


def test_a_new_user_has_no_storage_until_a_group_grants_it(
    live_server: LiveServer, user: Any, owned: dict[str, str]
) -> None:
    bob = user()
    spec = {"DataLocationS3": owned["sample"], "DataSchema": bank_sample_schema().to_json()}
    message = denied(bob.create_data_source_from_s3, DataSourceId=f"ds-{bob.user_name}", DataSpec=spec)
    assert f"storage:Read on resource: {owned['sample']}" in message
    access = live_server.service.access
    group = f"readers-{bob.user_name}"
    access.create_group(group, "reads the sample")
    access.add_statement(group, {"Effect": "Allow", "Action": "storage:Read", "Resource": owned["sample"]})
    access.add_member(group, bob.user_name)
    bob.create_data_source_from_s3(DataSourceId=f"ds-{bob.user_name}", DataSpec=spec)
    # His own objects: he lists them, renames them; the root's stay out of reach.
    listed = [r["DataSourceId"] for r in bob.describe_data_sources()["Results"]]
    assert listed == [f"ds-{bob.user_name}"]
    bob.update_data_source(DataSourceId=f"ds-{bob.user_name}", DataSourceName="mine")
    access.delete_group(group)


def test_viewers_read_everything_and_change_nothing(user: Any, owned: dict[str, str]) -> None:
    viewer = user((VIEWERS,))
    assert viewer.get_data_source(DataSourceId=owned["source"])["DataSourceId"] == owned["source"]
    listed = [r["MLModelId"] for r in viewer.describe_ml_models()["Results"]]
    assert owned["model"] in listed
    denied(viewer.update_ml_model, MLModelId=owned["model"], MLModelName="renamed")
    denied(viewer.delete_data_source, DataSourceId=owned["source"])
    denied(viewer.predict, **predict_request(owned))


def test_predictors_only_predict(user: Any, owned: dict[str, str]) -> None:
    predictor = user((PREDICTORS,))
    assert "Prediction" in predictor.predict(**predict_request(owned))
    denied(predictor.get_ml_model, MLModelId=owned["model"])
    denied(predictor.describe_ml_models)


def test_an_explicit_deny_wins(live_server: LiveServer, user: Any, owned: dict[str, str]) -> None:
    viewer = user((VIEWERS,))
    access = live_server.service.access
    group = f"no-models-{viewer.user_name}"
    access.create_group(group)
    access.add_statement(group, {"Effect": "Deny", "Action": "Get*", "Resource": f"mlmodel/{owned['model']}"})
    access.add_statement(
        group, {"Effect": "Deny", "Action": "DescribeMLModels", "Resource": "mlmodel/ml-root-*"}
    )
    access.add_member(group, viewer.user_name)
    denied(viewer.get_ml_model, MLModelId=owned["model"])
    assert viewer.get_data_source(DataSourceId=owned["source"])["DataSourceId"] == owned["source"]
    listed = [r["MLModelId"] for r in viewer.describe_ml_models()["Results"]]
    assert owned["model"] not in listed
    access.delete_group(group)


def test_a_disabled_user_is_refused_and_can_be_enabled_again(
    live_server: LiveServer, user: Any, owned: dict[str, str]
) -> None:
    predictor = user((PREDICTORS,))
    access = live_server.service.access
    access.set_user_enabled(predictor.user_name, False)
    assert "is disabled" in denied(predictor.predict, **predict_request(owned))
    access.set_user_enabled(predictor.user_name, True)
    assert "Prediction" in predictor.predict(**predict_request(owned))


def test_management_needs_iam_permissions_and_keeps_an_admin(live_server: LiveServer, user: Any) -> None:
    access = live_server.service.access
    bob = user()
    bob_arn = f"arn:aws:iam::000000000000:user/{bob.user_name}"
    with pytest.raises(Exception, match="not authorized to perform: iam:CreateUser"):
        access.create_user("mallory", caller=bob_arn)
    with pytest.raises(Exception, match="not authorized to perform: iam:AddUserToGroup"):
        access.add_member(ADMINS, bob.user_name, caller=bob_arn)
    # His own keys he manages; others' he does not.
    assert [k.user_name for k in access.list_keys(bob.user_name, caller=bob_arn)] == [bob.user_name]
    with pytest.raises(Exception, match="iam:ListAccessKeys"):
        access.list_keys("tester", caller=bob_arn)
    with pytest.raises(InvalidInputException, match="built-in"):
        access.delete_group(VIEWERS)
    with pytest.raises(InvalidInputException, match="cannot be changed"):
        access.add_statement(ADMINS, {"Effect": "Deny", "Action": "*"})
    with pytest.raises(InvalidInputException, match="matches no action"):
        access.add_statement(USERS, {"Effect": "Allow", "Action": "Descrbe*"})


def test_the_last_enabled_admin_stays(tmp_path: Path) -> None:
    app = EmrML(Settings.load(environ={}, home=tmp_path))
    try:
        ensure_admin(Identities(app.sessions, tmp_path), tmp_path)
        access = app.access
        access.create_user("second", (ADMINS,))
        access.set_user_enabled("second", False)
        for refused in (
            lambda: access.set_user_enabled("admin", False),
            lambda: access.delete_user("admin"),
            lambda: access.remove_member(ADMINS, "admin"),
        ):
            with pytest.raises(InvalidInputException, match="last enabled member of admins"):
                refused()
        access.set_user_enabled("second", True)
        access.remove_member(ADMINS, "admin")
        assert access.get_group(ADMINS).members == ("second",)
    finally:
        app.close()


def test_refresh_reloads_remembered_policies_before_they_expire(tmp_path: Path) -> None:
    app = EmrML(Settings.load(environ={}, home=tmp_path))
    try:
        app.access.create_user("carol", (PREDICTORS,))
        now = [0.0]
        access = Access(app.sessions, app.settings, ttl=2.0, clock=lambda: now[0])  # another process's
        arn = f"arn:aws:iam::{app.settings.account_id}:user/carol"
        assert access.policy(arn).enabled
        app.access.set_user_enabled("carol", False)
        now[0] = 1.0
        assert access.policy(arn).enabled  # remembered
        access.policies.refresh()  # as a server's thread does every ttl / 2
        now[0] = 2.5  # past the first reading's ttl, within the refresh's: no reading now
        with patch.object(access.policies, "read", side_effect=AssertionError("read on the request's path")):
            assert not access.policy(arn).enabled
    finally:
        app.close()


def test_group_statements_round_trip_as_json(live_server: LiveServer) -> None:
    access = live_server.service.access
    name = f"g-{uuid.uuid4().hex[:6]}"
    access.create_group(name, "json")
    sid = access.add_statement(name, {"Effect": "Allow", "Action": ["Get*"], "Resource": "datasource/ds-*"})
    (statement,) = access.get_group(name).statements
    assert statement.sid == sid
    assert json.loads(json.dumps(statement.document())) == {
        "Effect": "Allow",
        "Action": ["machinelearning:Get*"],
        "Resource": ["datasource/ds-*"],
        "Owner": "any",
    }
    access.remove_statement(name, sid)
    assert access.get_group(name).statements == ()
    access.delete_group(name)
    assert name not in [group.name for group in access.list_groups()]


def test_the_aws_cli_gets_the_same_refusal(
    live_server: LiveServer, owned: dict[str, str], tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from test_awscli import aws_command, finish

    name = f"u-{uuid.uuid4().hex[:8]}"
    live_server.service.access.create_user(name, (VIEWERS,))
    key = live_server.identities.create_key(name)
    as_bob = SimpleNamespace(url=live_server.url, key=key)
    try:
        code, _, stderr = finish(
            aws_command(as_bob, tmp_path, ["delete-ml-model", "--ml-model-id", owned["model"]])
        )
        assert code != 0 and "AccessDeniedException" in stderr
        assert f"machinelearning:DeleteMLModel on resource: mlmodel/{owned['model']}" in stderr
        code, stdout, _ = finish(aws_command(as_bob, tmp_path, ["describe-data-sources"]))
        assert code == 0 and owned["source"] in stdout
    finally:
        live_server.service.access.delete_user(name)
