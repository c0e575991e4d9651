"""``emrml tags``: add, list and delete the tags of a datasource, model, evaluation or batch prediction
(``--type``, DataSource unless given)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import typer

from emrml import cli_render as render
from emrml.cli_common import command_group, print_json, reports_errors, state
from emrml.errors import InvalidTagException, ResourceNotFoundException

tags_app = command_group(help="Add, list and delete tags of an object.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(tags_app, name="tags")


class ResourceType(StrEnum):
    DataSource = "DataSource"
    MLModel = "MLModel"
    Evaluation = "Evaluation"
    BatchPrediction = "BatchPrediction"


TYPE_HELP = "Object type, in any case (model and batch-prediction too); default DataSource."
#: ``--type`` values, lower-cased: the API's names and the words of the commands (``emrml model``).
_TYPE_NAMES = {
    **{kind.value.lower(): kind for kind in ResourceType},
    "model": ResourceType.MLModel,
    "batch-prediction": ResourceType.BatchPrediction,
}


def _resource_type(value: str) -> ResourceType:
    """``--type``: the API's name in any case (``mlmodel``), or the command's word (``model``), as the list
    commands take ``--type binary``."""
    if isinstance(value, ResourceType):
        return value
    try:
        return _TYPE_NAMES[value.lower()]
    except KeyError:
        names = ", ".join(kind.value for kind in ResourceType)
        raise typer.BadParameter(f"{value!r} is not one of {names}") from None


def _type_option() -> Any:
    return typer.Option(
        None,
        "--type",
        help=TYPE_HELP,
        parser=_resource_type,
        metavar="<DataSource|MLModel|Evaluation|BatchPrediction>",
    )


@tags_app.command("add")
@reports_errors
def tags_add(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", metavar="ID", help="Object id."),
    resource_type: ResourceType | None = _type_option(),
    tags: list[str] = typer.Argument(
        ..., metavar="KEY=VALUE...", help="KEY=VALUE pairs (KEY alone: a tag without value)."
    ),
) -> None:
    """Add tags to an object; an existing key gets the new value."""
    resource_type = _tagged(ctx, resource_type)
    request = {"ResourceId": resource_id, "ResourceType": resource_type.value, "Tags": _parse_tags(tags)}
    _tags_call(
        ctx,
        "AddTags",
        request,
        f"Tagged {resource_type.value} {resource_id} with {len(tags)} tag(s).",
        given=("Tags", tags),
    )


@tags_app.command("list")
@reports_errors
def tags_list(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", metavar="ID", help="Object id."),
    resource_type: ResourceType | None = _type_option(),
) -> None:
    """List an object's tags."""
    resource_type = _tagged(ctx, resource_type)
    current = state(ctx)
    result = _tags_call(ctx, "DescribeTags", {"ResourceId": resource_id, "ResourceType": resource_type.value})
    if current.json:
        return
    tags = result.get("Tags", [])
    current.console.print(
        render.tags_table(tags) if tags else f"{resource_type.value} {resource_id} has no tags."
    )


@tags_app.command("delete")
@reports_errors
def tags_delete(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", metavar="ID", help="Object id."),
    resource_type: ResourceType | None = _type_option(),
    keys: list[str] = typer.Argument(
        ..., metavar="KEY...", help="Tag keys to remove (unknown keys are ignored)."
    ),
) -> None:
    """Delete tags of an object by key."""
    resource_type = _tagged(ctx, resource_type)
    request = {"ResourceId": resource_id, "ResourceType": resource_type.value, "TagKeys": keys}
    _tags_call(
        ctx,
        "DeleteTags",
        request,
        f"Removed {len(keys)} tag key(s) from {resource_type.value} {resource_id}.",
        given=("TagKeys", keys),
    )


def _tagged(ctx: typer.Context, resource_type: ResourceType | None) -> ResourceType:
    """The ``--type`` given, else DataSource (remembered as not given, for ``_tags_call``'s error)."""
    ctx.meta["emrml.type_given"] = resource_type is not None
    return resource_type or ResourceType.DataSource


def _tags_call(
    ctx: typer.Context,
    operation: str,
    request: dict[str, Any],
    message: str = "",
    given: tuple[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Call a tags operation and print its output (json) or ``message``. ``--type`` defaults to DataSource:
    a model's id given without it is "not found" as a datasource, and the error says which type was meant.
    ``given``: the request member and the arguments it was made of, one item each: a tag the service refuses
    (``Tags[2].Key …``, a position the user did not count) is named as typed first."""
    current = state(ctx)
    try:
        result = current.service().call(operation, request)
    except InvalidTagException as exc:
        member, arguments = given or ("", [])
        for index, argument in enumerate(arguments):
            if member and exc.message.startswith(f"{member}[{index}]"):
                raise InvalidTagException(f"{argument!r}: {exc.message}") from None
        raise
    except ResourceNotFoundException as exc:
        if ctx.meta.get("emrml.type_given"):
            raise
        hint = "--type is DataSource unless given: MLModel, Evaluation or BatchPrediction for other objects"
        raise ResourceNotFoundException(f"{exc.message} ({hint})") from None
    if current.json:
        print_json(result)
    elif message:
        current.console.print(message)
    return result


def _parse_tags(pairs: Iterable[str]) -> list[dict[str, str]]:
    tags = []
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not key:  # the service would say "Tags[1].Key", a position the user did not count
            raise InvalidTagException(f"tag {pair!r} has no key: give KEY=VALUE, or KEY alone")
        tags.append({"Key": key, "Value": value} if separator else {"Key": key})
    return tags
