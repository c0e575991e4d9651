"""Console passwords are set through the service (``Access.set_password``, ``Access.create_user`` given
one), which checks ``iam:UpdateUser`` whichever door asks: a user who may create users but not update them
cannot give a new user a password, from the console or by calling the service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import Installation, log_in, login_token

from emrml.errors import AccessDeniedException
from emrml.service.logins import Logins


@pytest.fixture
def creator(installation: Installation) -> Iterator[str]:
    """A user allowed to create users (and to list users and groups, which the users page shows), not to
    update them."""
    access, name = installation.service.access, f"cora-{uuid.uuid4().hex[:6]}"
    access.create_group(f"{name}-group")
    actions = ["iam:CreateUser", "iam:AddUserToGroup", "iam:ListUsers", "iam:ListGroups", "iam:GetUser"]
    access.add_statement(f"{name}-group", {"Effect": "Allow", "Action": actions, "Resource": "*"})
    access.create_user(name, (f"{name}-group",))
    Logins(installation.service.sessions).set_password(name, f"{name}-password-1")
    yield name
    access.delete_user(name)
    access.delete_group(f"{name}-group")


def test_a_password_given_at_creation_needs_iam_update_user(
    anonymous: Any, installation: Installation, creator: str
) -> None:
    access = installation.service.access
    assert log_in(anonymous, creator, f"{creator}-password-1").status_code == 303
    new = f"nell-{uuid.uuid4().hex[:6]}"
    form = {"csrf_token": login_token(anonymous.get("/console/users").text), "name": new}
    refused = anonymous.post("/console/users", data={**form, "password": "nell-password-1"})
    assert refused.status_code == 400 and "iam:UpdateUser" in refused.text
    assert new not in {user.name for user in access.list_users()}  # refused before it was made
    created = anonymous.post("/console/users", data={**form, "password": ""})
    assert created.status_code == 200 and "Created user" in created.text
    try:
        assert not Logins(installation.service.sessions).has_password(new)
        # Nor afterwards, from the user's page or by calling the service as the creator.
        token = login_token(anonymous.get(f"/console/users/{new}").text)
        data = {"csrf_token": token, "action": "password", "password": "nell-password-1"}
        sent = anonymous.post(f"/console/users/{new}", data=data)
        assert sent.status_code == 400 and "iam:UpdateUser" in sent.text
        with pytest.raises(AccessDeniedException, match="iam:UpdateUser"):
            access.set_password(new, "nell-password-1", caller=access.user_arn(creator))
        assert not Logins(installation.service.sessions).has_password(new)
    finally:
        access.delete_user(new)


def test_who_may_update_users_sets_a_password_at_creation(
    admin: Any, anonymous: Any, installation: Installation
) -> None:
    access, new = installation.service.access, f"owen-{uuid.uuid4().hex[:6]}"
    form = {"csrf_token": login_token(admin.get("/console/users").text), "name": new}
    created = admin.post("/console/users", data={**form, "password": "owen-password-1"})
    assert created.status_code == 200 and "Created user" in created.text
    try:
        assert Logins(installation.service.sessions).verify(new, "owen-password-1")
        access.set_password(new, "owen-password-2", caller=access.user_arn("admin"))
        assert Logins(installation.service.sessions).verify(new, "owen-password-2")
    finally:
        access.delete_user(new)
