"""Users and groups in the console: administrators manage them through the same service.access calls as
the CLI; others are refused; a disabled user cannot log in and its session ends."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

from console_helpers import BOB_PASSWORD, Installation, log_in, login_token


def _token(client: Any, path: str) -> str:
    return login_token(client.get(path).text)


def test_an_admin_creates_a_user_puts_it_in_a_group_and_grants_storage(
    admin: Any, installation: Installation
) -> None:
    name = f"dana-{uuid.uuid4().hex[:6]}"
    created = admin.post(
        "/console/users",
        data={
            "csrf_token": _token(admin, "/console/users"),
            "name": name,
            "password": "dana-password-1",
            "groups": ["viewers"],
        },
    )
    assert created.status_code == 200 and "Created user" in created.text
    users = admin.get("/console/users?format=json").json()["Users"]
    assert {"UserName": name, "Groups": ["viewers"], "Enabled": True}.items() <= next(
        u for u in users if u["UserName"] == name
    ).items()
    group = f"data-{name}"
    made = admin.post("/console/groups", data={"csrf_token": _token(admin, "/console/groups"), "name": group})
    assert made.status_code == 303
    token = _token(admin, f"/console/groups/{group}")
    statement = '{"Effect": "Allow", "Action": "storage:Read", "Resource": "/srv/data/*"}'
    added = admin.post(
        f"/console/groups/{group}",
        data={"csrf_token": token, "action": "add-statement", "statement": statement},
    )
    assert added.status_code == 303
    bad = admin.post(
        f"/console/groups/{group}",
        data={
            "csrf_token": token,
            "action": "add-statement",
            "statement": '{"Effect": "Allow", "Action": "Nope"}',
        },
    )
    assert bad.status_code == 400 and "matches no action" in bad.text
    twice = '{"Effect": "Deny", "Action": "Predict", "Effect": "Allow"}'
    data = {"csrf_token": token, "action": "add-statement", "statement": twice}
    repeated = admin.post(f"/console/groups/{group}", data=data)
    assert (
        repeated.status_code == 400
        and "the statement names the member &#39;Effect&#39; twice" in repeated.text
    )
    admin.post(f"/console/groups/{group}", data={"csrf_token": token, "action": "add-member", "user": name})
    # Each Remove button names what it removes: a screen reader's list of buttons tells them apart.
    page = admin.get(f"/console/groups/{group}").text
    assert f'aria-label="Remove {name} from {group}">Remove</button>' in page
    assert 'aria-label="Remove statement 1">Remove</button>' in page
    shown = admin.get(f"/console/groups/{group}?format=json").json()["Group"]
    assert shown["Members"] == [name]
    assert shown["Statements"] == [
        {"Sid": 1, "Effect": "Allow", "Action": ["storage:Read"], "Resource": ["/srv/data/*"], "Owner": "any"}
    ]
    assert installation.service.access.get_group(group).members == (name,)
    refusals = (
        ("x", "not a whole number"),
        ("\u00b2", "not a whole number"),
        ("99999", "no statement"),
        ("9" * 30, "far past any statement"),
    )
    for sid, says in refusals:
        data = {"csrf_token": token, "action": "remove-statement", "sid": sid}
        odd = admin.post(f"/console/groups/{group}", data=data)  # refused, not a server error
        assert odd.status_code == 400 and says in odd.text


def test_a_group_of_every_user_offers_no_empty_add_member_form(
    admin: Any, installation: Installation
) -> None:
    """Once every user is a member, the page says so instead of an empty select whose Add sends no user."""
    group = f"all-{uuid.uuid4().hex[:6]}"
    assert admin.post("/console/groups", data={"csrf_token": _token(admin, "/console/groups"), "name": group})
    try:
        token = _token(admin, f"/console/groups/{group}")
        for user in admin.get(f"/console/groups/{group}?format=json").json()["Users"]:
            data = {"csrf_token": token, "action": "add-member", "user": user}
            assert admin.post(f"/console/groups/{group}", data=data).status_code == 303
        page = admin.get(f"/console/groups/{group}").text
        assert 'id="user"' not in page and 'value="add-member"' not in page
        # Deleting the group cannot be undone: its button asks first (console.js), naming the group.
        question = f"Delete group {group} and its permission statements? This cannot be undone."
        assert f'data-confirm="{question}">Delete group</button>' in page
        assert re.search(
            r'<p class="hint" id="all-members">Every user is a member of [^<]+ already\.</p>', page
        )
        # A user sent anyway (from a stale page) is refused beside the select, which its error describes.
        data = {"csrf_token": token, "action": "remove-member", "user": "bob"}
        assert admin.post(f"/console/groups/{group}", data=data).status_code == 303
        data = {"csrf_token": token, "action": "add-member", "user": "nobody-here"}
        refused = admin.post(f"/console/groups/{group}", data=data)
        assert refused.status_code == 400 and 'id="add-member-error"' in refused.text
        assert 'name="user" aria-invalid="true" aria-describedby="add-member-error"' in refused.text
    finally:
        installation.service.access.delete_group(group)


def test_users_who_are_not_admins_are_refused_the_admin_pages(anonymous: Any) -> None:
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    home = anonymous.get("/console/")
    assert home.status_code == 200 and "/console/users" not in home.text
    for path in ("/console/users", "/console/groups", "/console/users/admin", "/console/groups/admins"):
        refused = anonymous.get(path)
        assert refused.status_code == 403, path
        assert "iam:" in refused.text
    token = _token(anonymous, "/console/account")
    escalation = anonymous.post(
        "/console/groups/admins", data={"csrf_token": token, "action": "add-member", "user": "bob"}
    )
    assert escalation.status_code == 403


def test_a_disabled_user_cannot_log_in_and_its_session_ends(admin: Any, installation: Installation) -> None:
    from starlette.testclient import TestClient

    from emrml.service.logins import Logins
    from emrml.web.server import create_app

    name = f"erin-{uuid.uuid4().hex[:6]}"
    access = installation.service.access
    access.create_user(name)
    Logins(installation.service.sessions).set_password(name, "erin-password-1")
    with TestClient(create_app(installation.service), follow_redirects=False) as erin:
        assert log_in(erin, name, "erin-password-1").status_code == 303
        assert erin.get("/console/").status_code == 200
        token = _token(admin, f"/console/users/{name}")
        disabled = admin.post(f"/console/users/{name}", data={"csrf_token": token, "action": "disable"})
        assert disabled.status_code == 303
        assert erin.get("/console/").status_code == 303  # back to the login page
        refused = log_in(erin, name, "erin-password-1")
        assert refused.status_code == 403 and "disabled" in refused.text
        access.set_user_enabled(name, True)
        assert log_in(erin, name, "erin-password-1").status_code == 303


def test_an_admin_deactivates_and_activates_a_users_access_key(
    admin: Any, installation: Installation
) -> None:
    name = "keyholder"
    installation.service.access.create_user(name)
    key = installation.service.access.create_key(name)
    try:
        token = _token(admin, f"/console/users/{name}")
        form = {"csrf_token": token, "action": "deactivate-key", "key": key.access_key_id}
        assert admin.post(f"/console/users/{name}", data=form).status_code == 303
        (shown,) = admin.get(f"/console/users/{name}?format=json").json()["AccessKeys"]
        assert shown == {"AccessKeyId": key.access_key_id, "CreatedAt": shown["CreatedAt"], "Active": False}
        identities = installation.service.access.identities
        assert identities.credential(key.access_key_id) is None  # refused from now on
        assert "Inactive" in admin.get(f"/console/users/{name}").text
        form["action"] = "activate-key"
        assert admin.post(f"/console/users/{name}", data=form).status_code == 303
        assert identities.credential(key.access_key_id) is not None
    finally:
        installation.service.access.delete_user(name)


def test_names_that_paths_resolve_away_are_refused(admin: Any) -> None:
    # /console/users/.. is /console/ to a browser: a user or group named so could never be opened.
    for path, form in (
        ("/console/users", lambda name: {"name": name, "password": ""}),
        ("/console/groups", lambda name: {"name": name, "description": ""}),
    ):
        token = _token(admin, path)
        for name in (".", ".."):
            refused = admin.post(path, data={"csrf_token": token, **form(name)})
            assert refused.status_code == 400 and "not . or .." in refused.text, (path, name)
    users = [user["UserName"] for user in admin.get("/console/users?format=json").json()["Users"]]
    groups = [group["GroupName"] for group in admin.get("/console/groups?format=json").json()["Groups"]]
    assert not {".", ".."} & {*users, *groups}


def test_a_nul_in_a_name_or_description_is_refused_before_it_is_looked_up(admin: Any) -> None:
    # A PostgreSQL metastore's text holds no NUL: each lookup of such a name there was a 500.
    says = "holds a NUL character (U+0000), which no text may hold"
    for path in ("/console/users/bob%00", "/console/groups/users%00"):
        refused = admin.get(path)
        assert refused.status_code == 400 and f"the address&#39;s name {says}" in refused.text, path
    token = _token(admin, "/console/groups")
    for path, form in (
        ("/console/groups", {"name": "nul-group", "description": "a\x00b"}),
        ("/console/groups/users", {"action": "add-member", "user": "bob\x00"}),
        ("/console/users/bob", {"action": "join", "group": "users\x00"}),
    ):
        refused = admin.post(path, data={"csrf_token": token, **form})
        field = next(name for name, value in form.items() if "\x00" in value)
        assert refused.status_code == 400 and f"{field} {says}" in refused.text, path
    assert "nul-group" not in admin.get("/console/groups").text


def test_refused_user_and_group_forms_keep_what_was_typed(admin: Any) -> None:
    description = '<b>"analysts"</b> ' + "d" * 1000
    group = admin.post(
        "/console/groups",
        data={
            "csrf_token": _token(admin, "/console/groups"),
            "name": "kept-group",
            "description": description,
        },
    )
    assert group.status_code == 400 and 'id="description-error"' in group.text
    assert 'value="kept-group"' in group.text
    kept = re.search(r'id="description" name="description" value="([^"]*)"', group.text)
    assert kept is not None and html.unescape(kept.group(1)) == description
    user = admin.post(
        "/console/users",
        data={
            "csrf_token": _token(admin, "/console/users"),
            "name": "kept-user",
            "password": "short",
            "groups": ["viewers", "predictors"],
        },
    )
    assert user.status_code == 400 and 'id="password-error"' in user.text
    assert 'value="kept-user"' in user.text
    assert re.findall(r'value="(\w+)" checked', user.text) == ["predictors", "viewers"]
    assert 'value="short"' not in user.text


def test_a_member_of_users_manages_its_own_access_keys_from_its_account(
    anonymous: Any, installation: Installation
) -> None:
    """users allows its members their own access keys (iam:GetUser, ListAccessKeys, CreateAccessKey,
    DeleteAccessKey on themselves): the account page links their user page, which opens without
    iam:ListGroups and offers those changes only, naming the others."""
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    account = anonymous.get("/console/account")
    assert 'href="/console/users/bob" id="own-user"' in account.text
    page = anonymous.get("/console/users/bob")
    assert page.status_code == 200
    offered = set(re.findall(r'name="action" value="([\w-]+)"', page.text))
    assert offered == {"create-key"}
    note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', page.text)
    assert note and "iam:UpdateUser" in note.group(1) and "iam:CreateAccessKey" not in note.group(1)
    token = login_token(page.text)
    created = anonymous.post("/console/users/bob", data={"csrf_token": token, "action": "create-key"})
    assert created.status_code == 200 and 'id="new-key-secret"' in created.text
    (key,) = anonymous.get("/console/users/bob?format=json").json()["AccessKeys"]
    assert 'value="delete-key"' in anonymous.get("/console/users/bob").text
    deleted = anonymous.post(
        "/console/users/bob", data={"csrf_token": token, "action": "delete-key", "key": key["AccessKeyId"]}
    )
    assert deleted.status_code == 303
    assert anonymous.get("/console/users/bob?format=json").json()["AccessKeys"] == []
    assert anonymous.get("/console/users/admin").status_code == 403
    assert 'href="/console/users"' not in page.text  # the list of users is not bob's to open


def test_an_auditor_who_may_only_read_users_and_groups_is_offered_no_change(
    anonymous: Any, installation: Installation
) -> None:
    from emrml.service.logins import Logins

    access, name = installation.service.access, f"audrey-{uuid.uuid4().hex[:6]}"
    access.create_group(f"{name}-group")
    reading = ["iam:ListUsers", "iam:GetUser", "iam:ListGroups", "iam:GetGroup"]
    access.add_statement(f"{name}-group", {"Effect": "Allow", "Action": reading, "Resource": "*"})
    access.create_user(name, (f"{name}-group",))
    Logins(installation.service.sessions).set_password(name, f"{name}-password-1")
    try:
        assert log_in(anonymous, name, f"{name}-password-1").status_code == 303
        for path in ("/console/users", "/console/groups", "/console/users/bob", "/console/groups/users"):
            page = anonymous.get(path)
            assert page.status_code == 200, path
            assert 'method="post" class' not in page.text.split("</header>", 1)[1], path
        keys = anonymous.get("/console/users/bob?format=json").json()
        assert keys["AccessKeys"] == [] and keys["AccessKeysRefused"] == "iam:ListAccessKeys"
        assert "iam:DeleteGroup" in anonymous.get("/console/groups/users").text
        # Not offered, and refused by the service when sent anyway.
        form = {"csrf_token": _token(anonymous, "/console/users"), "action": "reassign"}
        sent = anonymous.post("/console/users", data={**form, "from_user": "bob", "to_user": name})
        assert sent.status_code == 400 and "iam:ReassignObjects" in sent.text
    finally:
        access.delete_user(name)
        access.delete_group(f"{name}-group")


def test_an_admin_gives_a_deleted_users_objects_away_from_the_users_page_then_reuses_its_name(
    admin: Any, installation: Installation
) -> None:
    from sqlalchemy import update

    from emrml.samples import bank_sample_schema
    from emrml.service.rows import DataSource

    service, suffix = installation.service, uuid.uuid4().hex[:6]
    name, heir = f"fay-{suffix}", f"gus-{suffix}"
    service.access.create_user(name)
    service.access.create_user(heir, ())
    spec = {"DataLocationS3": str(installation.sample), "DataSchema": bank_sample_schema().to_json()}
    source = f"ds-{name}"
    service.call("CreateDataSourceFromS3", {"DataSourceId": source, "DataSpec": spec})
    with service.sessions() as session, session.begin():  # fay's, as if she had created it
        fays = update(DataSource).where(DataSource.id == source)
        session.execute(fays.values(created_by=service.access.user_arn(name)))
    service.access.delete_user(name)
    token = _token(admin, "/console/users")
    refused = admin.post("/console/users", data={"csrf_token": token, "name": name})
    # The refusal leads to the form that clears the way, filled in with the name.
    assert refused.status_code == 400 and "1 object(s) (1 DataSource)" in refused.text
    assert 'href="#reassign-heading"' in refused.text
    assert re.search(rf'id="from_user" name="from_user" value="{name}"', refused.text)
    form = {"csrf_token": token, "action": "reassign", "from_user": name, "to_user": heir}
    moved = admin.post("/console/users?format=json", data=form)
    assert moved.status_code == 200, moved.text
    assert moved.json()["Reassigned"] == {"From": name, "To": heir, "Objects": {"DataSource": 1}, "Count": 1}
    owner = service.call("GetDataSource", {"DataSourceId": source})["CreatedByIamUser"]
    assert owner == service.access.user_arn(heir)
    nobody = admin.post("/console/users", data={**form, "from_user": heir, "to_user": "no-such-user"})
    assert nobody.status_code == 400 and "does not exist" in nobody.text
    created = admin.post("/console/users", data={"csrf_token": token, "name": name})
    assert created.status_code == 200 and "Created user" in created.text
    service.access.delete_user(name)


def test_the_new_user_forms_admins_box_comes_last_and_says_what_it_grants(admin: Any) -> None:
    """Tab then Space from the password field ticks the first group's box: that is never admins."""
    page = admin.get("/console/users").text
    boxes = re.findall(r'<input type="checkbox" name="groups" value="([^"]+)"', page)
    assert len(boxes) > 1 and boxes[-1] == "admins" and boxes[:-1] == sorted(boxes[:-1])
    assert "admins (every permission)</label>" in page
