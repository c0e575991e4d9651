"""AddTags, DescribeTags, DeleteTags (spec 4.7), and tag inheritance from parent objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from emrml.errors import InvalidTagException, TagLimitExceededException
from emrml.service.operations import CALLER, Request, Response, find, find_live, lock_row, operation
from emrml.service.rows import Tag

if TYPE_CHECKING:
    from emrml.service.app import EmrML

MAX_TAGS = 50


def _tags(session: Session, kind: str, entity_id: str) -> list[Tag]:
    query = select(Tag).where(Tag.resource_type == kind, Tag.resource_id == entity_id).order_by(Tag.position)
    return list(session.scalars(query))


def _check_key(key: str, where: str) -> None:
    """Amazon reserves the ``aws:`` prefix (spec 4.7): such keys are neither added nor deleted. ``where``:
    the member holding the key, as the request names it (``Tags[2].Key``)."""
    if key.lower().startswith("aws:"):
        raise InvalidTagException(f"{where} {key!r}: keys starting with 'aws:' are reserved")


def put_tags(session: Session, kind: str, entity_id: str, tags: list[dict[str, str]]) -> None:
    """Add or overwrite tags (AddTags' ``Tags``), keeping at most 50 on the object."""
    for index, tag in enumerate(tags):
        if not tag.get("Key"):
            # The model leaves Key optional in its Tag shape, but a tag is its key.
            raise InvalidTagException(f"Tags[{index}].Key is required: every tag needs a Key")
        _check_key(tag["Key"], f"Tags[{index}].Key")
    existing = {tag.key: tag for tag in _tags(session, kind, entity_id)}
    new_keys = {tag["Key"] for tag in tags} - existing.keys()
    if len(existing) + len(new_keys) > MAX_TAGS:
        raise TagLimitExceededException(
            f"{kind} {entity_id!r} would have {len(existing) + len(new_keys)} tags; the limit is {MAX_TAGS}"
        )
    position = session.scalar(
        select(func.coalesce(func.max(Tag.position), 0)).where(
            Tag.resource_type == kind, Tag.resource_id == entity_id
        )
    )
    for tag in tags:
        if tag["Key"] in existing:
            existing[tag["Key"]].value = tag.get("Value")
            continue
        position += 1
        row = Tag(resource_type=kind, resource_id=entity_id, key=tag["Key"], value=tag.get("Value"))
        row.position = position
        session.add(row)
        existing[tag["Key"]] = row


def inherit_tags(
    app: EmrML, session: Session, child: tuple[str, str], parents: list[tuple[str, str]]
) -> None:
    """Copy the parents' tags to a new object; later parents win on key conflicts (spec 4.7), and, when
    together they have more than the child may hold, keep theirs before the earlier parents'. Only the
    tags of parents the running request's caller may ``DescribeTags`` are copied: it could read them on
    the new object, its own. The spec says nothing of permissions; they are left out rather than the
    request refused, as the caller may use the parent all the same."""
    caller = CALLER.get()
    merged: dict[str, str | None] = {}
    for kind, entity_id in reversed(parents):
        owner = find(session, kind, entity_id).created_by
        if not app.access.decides_on(caller, "DescribeTags", kind, entity_id, owner):
            continue
        for tag in _tags(session, kind, entity_id):
            merged.setdefault(tag.key, tag.value)
    put_tags(session, *child, [{"Key": key, "Value": value} for key, value in merged.items()][:MAX_TAGS])


@operation("AddTags")
def add_tags(app: EmrML, request: Request) -> Response:
    kind, entity_id = request["ResourceType"], request["ResourceId"]
    with app.sessions() as session, session.begin():
        lock_row(session, kind, entity_id)
        find_live(session, kind, entity_id)
        put_tags(session, kind, entity_id, request["Tags"])
    return {"ResourceId": entity_id, "ResourceType": kind}


@operation("DescribeTags")
def describe_tags(app: EmrML, request: Request) -> Response:
    kind, entity_id = request["ResourceType"], request["ResourceId"]
    with app.sessions() as session:
        find(session, kind, entity_id)
        tags = [
            {"Key": tag.key} | ({"Value": tag.value} if tag.value is not None else {})
            for tag in _tags(session, kind, entity_id)
        ]
    return {"ResourceId": entity_id, "ResourceType": kind, "Tags": tags}


@operation("DeleteTags")
def delete_tags(app: EmrML, request: Request) -> Response:
    kind, entity_id = request["ResourceType"], request["ResourceId"]
    with app.sessions() as session, session.begin():
        find_live(session, kind, entity_id)
        for index, key in enumerate(request["TagKeys"]):
            _check_key(key, f"TagKeys[{index}]")
        session.execute(
            delete(Tag).where(
                Tag.resource_type == kind, Tag.resource_id == entity_id, Tag.key.in_(request["TagKeys"])
            )
        )
    return {"ResourceId": entity_id, "ResourceType": kind}
