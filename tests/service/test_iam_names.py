"""Users, groups and access keys named as the CLI and the console send them: a name no user or group can
have is refused by its rule before any lookup, on every metastore (PostgreSQL's text holds no NUL: such a
name was an internal error there, and on SQLite a lookup that found nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.service.logins import Logins

BAD = "bo\x00b"

USER_OPERATIONS: list[tuple[str, Callable[[EmrML], Any]]] = [
    ("get_user", lambda app: app.access.get_user(BAD)),
    ("set_user_enabled", lambda app: app.access.set_user_enabled(BAD, False)),
    ("delete_user", lambda app: app.access.delete_user(BAD)),
    ("reassign_objects", lambda app: app.access.reassign_objects("alice", BAD)),
    ("list_keys", lambda app: app.access.list_keys(BAD)),
    ("create_key", lambda app: app.access.create_key(BAD)),
    ("add_member", lambda app: app.access.add_member("users", BAD)),
    ("remove_member", lambda app: app.access.remove_member("users", BAD)),
    ("set_password", lambda app: Logins(app.sessions).set_password(BAD, "a long enough password 1")),
]
GROUP_OPERATIONS: list[tuple[str, Callable[[EmrML], Any]]] = [
    ("get_group", lambda app: app.access.get_group(BAD)),
    ("delete_group", lambda app: app.access.delete_group(BAD)),
    ("add_member", lambda app: app.access.add_member(BAD, "alice")),
    ("remove_member", lambda app: app.access.remove_member(BAD, "alice")),
    ("add_statement", lambda app: app.access.add_statement(BAD, {"Effect": "Allow", "Action": "Describe*"})),
    ("remove_statement", lambda app: app.access.remove_statement(BAD, 1)),
    ("create_user in it", lambda app: app.access.create_user("carol", (BAD,))),
]


def test_a_name_no_user_or_group_can_have_is_refused_by_its_rule_on_every_metastore(app: EmrML) -> None:
    app.access.create_user("alice")
    for kind, operations in (("user", USER_OPERATIONS), ("group", GROUP_OPERATIONS)):
        for name, operation in operations:
            with pytest.raises(InvalidInputException) as refused:
                operation(app)
            assert refused.value.message.startswith(f"{kind} name 'bo\\x00b' must be 1-64 characters"), name
    assert [user.name for user in app.access.list_users() if user.name == "carol"] == []


@pytest.mark.parametrize("key_id", ["EMRL\x00", "EMRL ABC", "EMRLÄ"])
def test_an_access_key_id_no_key_can_have_is_an_unknown_key(app: EmrML, key_id: str) -> None:
    for operation in (
        lambda: app.access.delete_key(key_id),
        lambda: app.access.set_key_active(key_id, False),
    ):
        with pytest.raises(ResourceNotFoundException, match="does not exist"):
            operation()
