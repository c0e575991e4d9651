"""Users and groups (administrators): users, their console passwords, access keys and groups; groups and
their permission statements.

Every change goes through ``service.access`` with the logged-in user as caller, the same calls the
``emrml users`` / ``emrml groups`` commands make, so the authorization model decides who may do it
(a console password too: ``Access.set_password``, and ``Access.create_user`` given one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.responses import Response

from emrml.console.app import View, Visit
from emrml.errors import AmazonMLError, InvalidInputException
from emrml.service.groups import ADMINS
from emrml.service.identity import NameHeldByObjects
from emrml.service.policy import statement_document, statement_number


def _user_row(user: Any) -> dict[str, Any]:
    return {
        "UserName": user.name,
        "CreatedAt": user.created_at,
        "Enabled": user.enabled,
        "Groups": list(user.groups),
        "AccessKeys": user.access_keys,
    }


def _without_nul(visit: Visit) -> None:
    """Refuse, naming it, an address part or form field holding a NUL, before anything is looked up: no
    name or description holds one, and a PostgreSQL metastore's text cannot (each lookup was a 500)."""
    fields = [(f"the address's {name}", value) for name, value in visit.params.items()]
    if visit.form is not None:
        fields += [(name, value) for name, value in visit.form.multi_items() if isinstance(value, str)]
    for name, value in fields:
        if "\x00" in value:
            raise InvalidInputException(f"{name} holds a NUL character (U+0000), which no text may hold")


def users(visit: Visit) -> View | Response:
    """The users, the create-user form and the form giving a deleted user's objects to another user."""
    _without_nul(visit)
    access = visit.console.service.access
    errors: dict[str, str] = {}
    created: dict[str, Any] | None = None
    reassigned: dict[str, Any] | None = None
    held = ""  # a name refused for a create because a deleted user's objects still name it
    name, password = visit.field("name").strip(), visit.field("password")
    groups = tuple(str(g) for g in visit.form.getlist("groups")) if visit.form is not None else ()
    # Kept when refused; filled in with the name a create was refused for, its objects being in the way.
    reassign = {"from_user": visit.field("from_user").strip(), "to_user": visit.field("to_user")}
    action = visit.field("action", "create")
    reassigns = access.may(visit.user, "iam:ReassignObjects")
    if visit.form is not None and action == "reassign":
        try:
            moved = access.reassign_objects(reassign["from_user"], reassign["to_user"], caller=visit.arn)
        except AmazonMLError as exc:
            # Beside the form, or atop the page when the form is not offered (sent anyway).
            errors["reassign" if reassigns else "general"] = exc.message
        else:
            reassigned = _reassigned(reassign, moved)
            reassign = {"from_user": "", "to_user": ""}
    elif visit.form is not None and action == "create":
        try:
            access.create_user(name, groups or None, password=password or None, caller=visit.arn)
        except NameHeldByObjects as exc:
            errors["name"] = exc.message
            reassign["from_user"] = held = exc.name
        except AmazonMLError as exc:
            errors["name" if "password" not in exc.message else "password"] = exc.message
        else:
            created = {"UserName": name}
    elif visit.form is not None:
        errors["general"] = f"unknown action {action!r}"
    listed = access.list_users(caller=visit.arn)
    data: dict[str, Any] = {"Users": [_user_row(user) for user in listed], "Groups": _group_names(visit)}
    if reassigned is not None:
        data["Reassigned"] = reassigned
    status = 400 if errors else 200
    # A refused user's name and groups stay in the form (its password does not: it is typed again).
    form = (
        {"name": name, "groups": groups}
        if "name" in errors or "password" in errors
        else {"name": "", "groups": ()}
    )
    extra = {
        "errors": errors,
        "created": created,
        "form": form,
        "reassign": reassign,
        "held": held,
        # Linked only when they open: a user's page needs iam:GetUser on it, the groups' iam:ListGroups.
        "openable": {user.name for user in listed if _permits(visit, "iam:GetUser", f"user/{user.name}")},
        "lists_groups": _permits(visit, "iam:ListGroups"),
        "creates": access.may(visit.user, "iam:CreateUser"),
        "reassigns": reassigns,
    }
    return View("users.html", data, status, extra)


def _reassigned(form: dict[str, str], moved: dict[str, int]) -> dict[str, Any]:
    return {"From": form["from_user"], "To": form["to_user"], "Objects": moved, "Count": sum(moved.values())}


def _permits(visit: Visit, action: str, resource: str = "*") -> bool:
    return visit.console.service.access.permits(visit.arn, action, resource)


def _offers(visit: Visit, actions: Sequence[str], resource: str) -> dict[str, Any]:
    """The page's ``offered`` changes (action -> whether the visitor may make it on ``resource``) and the
    ``refused`` ones as IAM action names, for its note."""
    offered = {action: _permits(visit, f"iam:{action}", resource) for action in actions}
    return {
        "offered": offered,
        "refused": [f"iam:{action}" for action, allowed in offered.items() if not allowed],
    }


def _group_names(visit: Visit) -> list[str]:
    """Every group's name, as a form offers them, ``admins`` last; none to who may not list the groups."""
    if not _permits(visit, "iam:ListGroups"):
        return []
    names = [group.name for group in visit.console.service.access.list_groups(caller=visit.arn)]
    # Last, not first by its name: the first box is the one a keyboard user ticks by Tab then Space.
    return sorted(names, key=lambda name: (name == ADMINS, name))


def user(visit: Visit) -> View | Response:
    _without_nul(visit)
    access = visit.console.service.access
    name = visit.params["name"]
    errors: dict[str, str] = {}
    new_key = None
    if visit.form is not None:
        action = visit.field("action")
        try:
            new_key = _user_action(visit, name, action)
        except AmazonMLError as exc:
            errors[action if action in USER_ACTIONS else "general"] = exc.message
        else:
            if action == "delete":
                return visit.redirect("users")
            if new_key is None:
                return visit.redirect(f"users/{name}")
    info = access.get_user(name, caller=visit.arn)
    data: dict[str, Any] = {
        "User": _user_row(info),
        "AccessKeys": [],
        "Groups": _group_names(visit),
        "HasPassword": visit.console.logins.has_password(name),
    }
    resource = f"user/{name}"
    if _permits(visit, "iam:ListAccessKeys", resource):
        data["AccessKeys"] = [
            {"AccessKeyId": key.access_key_id, "CreatedAt": key.created_at, "Active": key.active}
            for key in access.list_keys(name, caller=visit.arn)
        ]
    else:
        data["AccessKeysRefused"] = "iam:ListAccessKeys"
    # The changes offered are those the user may make (a member of users: its own access keys), the others
    # named in the page's note rather than refused once tried.
    extra = {
        "errors": errors,
        "new_key": new_key,
        **_offers(visit, USER_CHANGES, resource),
        "joinable": [
            group
            for group in data["Groups"]
            if group not in info.groups and _permits(visit, "iam:AddUserToGroup", f"group/{group}")
        ],
        "leavable": [g for g in info.groups if _permits(visit, "iam:RemoveUserFromGroup", f"group/{g}")],
    }
    return View("user.html", data, 400 if errors else 200, extra)


#: The changes of a user's page, by their iam: action on the user.
USER_CHANGES = ("UpdateUser", "DeleteUser", "CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey")


#: The user page's forms, each showing its own error; any other error shows at the top of the page.
USER_ACTIONS = frozenset(
    {"enable", "disable", "password", "create-key", "delete-key", "deactivate-key", "activate-key", "join",
     "leave", "delete"}
)  # fmt: skip
#: The group page's forms, likewise.
GROUP_ACTIONS = frozenset({"add-statement", "remove-statement", "add-member", "remove-member", "delete"})


def _user_action(visit: Visit, name: str, action: str) -> Any:
    access, caller = visit.console.service.access, visit.arn
    if action in ("enable", "disable"):
        access.set_user_enabled(name, action == "enable", caller=caller)
    elif action == "password":
        access.set_password(name, visit.field("password"), caller=caller)
    elif action == "create-key":
        return access.create_key(name, caller=caller)
    elif action == "delete-key":
        access.delete_key(visit.field("key"), caller=caller)
    elif action in ("deactivate-key", "activate-key"):
        access.set_key_active(visit.field("key"), action == "activate-key", caller=caller)
    elif action == "join":
        access.add_member(visit.field("group"), name, caller=caller)
    elif action == "leave":
        access.remove_member(visit.field("group"), name, caller=caller)
    elif action == "delete":
        if name == visit.user:
            raise InvalidInputException("you cannot delete yourself")
        access.delete_user(name, caller=caller)
    else:
        raise InvalidInputException(f"unknown action {action!r}")
    return None


def groups(visit: Visit) -> View | Response:
    _without_nul(visit)
    access = visit.console.service.access
    errors: dict[str, str] = {}
    # Kept in the form when refused, to be corrected rather than typed again.
    form = {"name": visit.field("name").strip(), "description": visit.field("description")}
    if visit.form is not None:
        try:
            access.create_group(form["name"], form["description"], caller=visit.arn)
        except AmazonMLError as exc:
            errors["description" if "description" in exc.message else "name"] = exc.message
        else:
            return visit.redirect(f"groups/{form['name']}")
    listed = access.list_groups(caller=visit.arn)
    extra = {
        "errors": errors,
        "form": form,
        "openable": {g.name for g in listed if _permits(visit, "iam:GetGroup", f"group/{g.name}")},
        "creates": access.may(visit.user, "iam:CreateGroup"),
    }
    data = {"Groups": [group.document() for group in listed]}
    return View("groups.html", data, 400 if errors else 200, extra)


def group(visit: Visit) -> View | Response:
    _without_nul(visit)
    access = visit.console.service.access
    name = visit.params["name"]
    errors: dict[str, str] = {}
    statement_text = ""
    if visit.form is not None:
        action = visit.field("action")
        try:
            if action == "add-statement":
                statement_text = visit.field("statement")
                document = statement_document(statement_text, "the statement")
                access.add_statement(name, document, caller=visit.arn)
            elif action == "remove-statement":
                access.remove_statement(name, statement_number(visit.field("sid")), caller=visit.arn)
            elif action == "add-member":
                access.add_member(name, visit.field("user"), caller=visit.arn)
            elif action == "remove-member":
                access.remove_member(name, visit.field("user"), caller=visit.arn)
            elif action == "delete":
                access.delete_group(name, caller=visit.arn)
                return visit.redirect("groups")
            else:
                raise InvalidInputException(f"unknown action {action!r}")
        except AmazonMLError as exc:
            errors[action if action in GROUP_ACTIONS else "general"] = exc.message
        else:
            return visit.redirect(f"groups/{name}")
    lists_users = _permits(visit, "iam:ListUsers")
    info = access.get_group(name, caller=visit.arn)
    data = {
        "Group": info.document(),
        "Users": [user.name for user in access.list_users(caller=visit.arn)] if lists_users else [],
    }
    resource = f"group/{name}"
    extra = {
        "errors": errors,
        "statement_text": statement_text,
        **_offers(visit, GROUP_CHANGES, resource),
        "openable": {member for member in info.members if _permits(visit, "iam:GetUser", f"user/{member}")},
        # The statements of admins cannot be changed (service.access): no form offers to.
        "fixed_statements": name == ADMINS,
    }
    return View("group.html", data, 400 if errors else 200, extra)


#: The changes of a group's page, by their iam: action on the group.
GROUP_CHANGES = (
    "AddUserToGroup", "RemoveUserFromGroup", "PutGroupPolicy", "DeleteGroupPolicy", "DeleteGroup",
)  # fmt: skip
