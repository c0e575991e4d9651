"""``emrml serve`` and the ``emrml users`` / ``emrml keys`` commands (who may call the HTTP API).

``register(app)`` adds them to the main Typer app. They read the main app's ``--home`` and ``--output``
options from the root context, so they behave like every other emrml command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from emrml import collector
from emrml.cli_common import command_group, log_as_lines, reports_errors
from emrml.config import Settings
from emrml.errors import AmazonMLError

if TYPE_CHECKING:
    from emrml.service.identity import Identities
    from emrml.web.tls import TlsSettings

P = ParamSpec("P")
R = TypeVar("R")

users_app = command_group(help="Users of the HTTP API (each with access keys).", no_args_is_help=True)
keys_app = command_group(
    help="Access keys: what boto3 and the aws CLI sign requests with.", no_args_is_help=True
)
DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
DEFAULT_PUBLIC_URL = next(f.default for f in dataclasses.fields(Settings) if f.name == "public_url")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``users`` and ``keys`` to the emrml command line."""
    app.command("serve")(serve)
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
    from emrml import cli_access

    cli_access.register(users_app, app)


def _root_option(ctx: typer.Context, name: str) -> Any:
    return ctx.find_root().params.get(name)


def _settings(ctx: typer.Context) -> Settings:
    return Settings.load(home=_root_option(ctx, "home"))


def _json_output(ctx: typer.Context) -> bool:
    return str(_root_option(ctx, "output") or "table") == "json"


def _identities(ctx: typer.Context) -> Identities:
    from emrml.service.confinement import prepare_home
    from emrml.service.identity import Identities
    from emrml.service.metastore import migrate, open_engine, session_factory

    settings = _settings(ctx)
    # As EmrML does: the first command on a fresh home may be `emrml users create`, and the metastore
    # (and secrets.key beside it) must not start out readable by everyone.
    prepare_home(settings)
    engine = open_engine(settings.database_url)
    migrate(engine, settings.home)
    ctx.call_on_close(engine.dispose)
    return Identities(session_factory(engine), settings.home, settings.account_id)


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _user_arn(ctx: typer.Context, name: str) -> str:
    from emrml.service.identity import user_arn

    return user_arn(_settings(ctx).account_id, name)


# ---------------------------------------------------------------------------------------------- users


@users_app.command("create")
@reports_errors
def users_create(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="NAME", help="User name: letters, digits and + = , . @ _ - (at most 64)."
    ),
    group: list[str] = typer.Option(
        [], "--group", "-g", help="A group to join (repeat; default: users, which has no storage access)."
    ),
) -> None:
    """Create a user (then give it a key with: emrml keys create NAME)."""
    from emrml.service.groups import DEFAULT_GROUPS

    user = _identities(ctx).create_user(name, tuple(group) or DEFAULT_GROUPS)
    arn = _user_arn(ctx, user.name)
    if _json_output(ctx):
        typer.echo(json.dumps({"UserName": user.name, "Arn": arn, "CreatedAt": user.created_at}, indent=2))
        return
    typer.echo(f"Created user {user.name} ({arn}). Give it an access key: emrml keys create {user.name}")


@users_app.command("list")
@reports_errors
def users_list(ctx: typer.Context) -> None:
    """List the users and how many access keys each has."""
    users = _identities(ctx).list_users()
    if _json_output(ctx):
        rows = [
            {
                "UserName": user.name,
                "Arn": _user_arn(ctx, user.name),
                "CreatedAt": user.created_at,
                "AccessKeys": user.access_keys,
                "Enabled": user.enabled,
                "Groups": list(user.groups),
            }
            for user in users
        ]
        typer.echo(json.dumps({"Results": rows}, indent=2))  # the shape of every list
        return
    if not users:
        typer.echo("No users.")
        return
    from emrml.cli_render.parts import titled_table  # the tables' code: not a server's start
    from emrml.core.readable import format_number

    table = titled_table(
        "Users", "User", "ARN", "Groups", "Enabled", "Created", "Access keys", right=["Access keys"]
    )
    for user in users:
        table.add_row(
            user.name,
            _user_arn(ctx, user.name),
            ", ".join(user.groups),
            "yes" if user.enabled else "no",
            _time(user.created_at),
            format_number(user.access_keys),
        )
    from emrml.cli_console import CliConsole

    CliConsole(markup=False).print(table)  # names and descriptions are text, not markup


@users_app.command("delete")
@reports_errors
def users_delete(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME", help="User name.")
) -> None:
    """Delete a user and its access keys (servers stop accepting them within seconds)."""
    from emrml.cli_access import access_of

    removed = access_of(ctx).delete_user(name)  # the last enabled admin stays
    typer.echo(f"Deleted user {name} and {removed} access key(s).")


# ---------------------------------------------------------------------------------------------- keys


@keys_app.command("create")
@reports_errors
def keys_create(
    ctx: typer.Context, user: str = typer.Argument(..., metavar="USER", help="The user the key belongs to.")
) -> None:
    """Create an access key for a user and show its secret — the only time it is shown."""
    key = _identities(ctx).create_key(user)
    if _json_output(ctx):
        document = {
            "UserName": key.user_name,
            "AccessKeyId": key.access_key_id,
            "SecretAccessKey": key.secret_access_key,
            "CreatedAt": key.created_at,
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"Access key for user {key.user_name}:")
    typer.echo(f"  aws_access_key_id     = {key.access_key_id}")
    typer.echo(f"  aws_secret_access_key = {key.secret_access_key}")
    typer.echo("Store the secret now: it is not shown again.")


@keys_app.command("list")
@reports_errors
def keys_list(
    ctx: typer.Context, user: str | None = typer.Option(None, "--user", help="Only this user's keys.")
) -> None:
    """List access keys (ids and owners; secrets are never shown)."""
    keys = _identities(ctx).list_keys(user)
    if _json_output(ctx):
        rows = [
            {
                "AccessKeyId": key.access_key_id,
                "UserName": key.user_name,
                "CreatedAt": key.created_at,
                "Status": "Active" if key.active else "Inactive",
            }
            for key in keys
        ]
        typer.echo(json.dumps({"Results": rows}, indent=2))  # the shape of every list
        return
    if not keys:
        typer.echo("No access keys.")
        return
    from emrml.cli_render.parts import titled_table  # the tables' code: not a server's start

    table = titled_table("Access keys", "Access key id", "User", "Created", "Status")
    for key in keys:
        table.add_row(
            key.access_key_id, key.user_name, _time(key.created_at), "Active" if key.active else "Inactive"
        )
    from emrml.cli_console import CliConsole

    CliConsole(markup=False).print(table)  # names and descriptions are text, not markup


@keys_app.command("deactivate")
@reports_errors
def keys_deactivate(
    ctx: typer.Context,
    access_key_id: str = typer.Argument(..., metavar="ACCESS_KEY_ID", help="Access key id."),
) -> None:
    """Deactivate an access key: refused like an unknown one (within seconds) until activated again."""
    _identities(ctx).set_key_active(access_key_id, False)
    typer.echo(f"Access key {access_key_id} is inactive.")


@keys_app.command("activate")
@reports_errors
def keys_activate(
    ctx: typer.Context,
    access_key_id: str = typer.Argument(..., metavar="ACCESS_KEY_ID", help="Access key id."),
) -> None:
    """Make a deactivated access key work again."""
    _identities(ctx).set_key_active(access_key_id, True)
    typer.echo(f"Access key {access_key_id} is active.")


@keys_app.command("delete")
@reports_errors
def keys_delete(
    ctx: typer.Context,
    access_key_id: str = typer.Argument(..., metavar="ACCESS_KEY_ID", help="Access key id."),
) -> None:
    """Delete an access key (servers stop accepting it within seconds)."""
    _identities(ctx).delete_key(access_key_id)
    typer.echo(f"Deleted access key {access_key_id}.")


# ---------------------------------------------------------------------------------------------- serve


def _url_host(host: str) -> str:
    """``host`` as it goes in a URL: a wildcard becomes 127.0.0.1, an IPv6 address gets brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _transport(tls: TlsSettings | None) -> str:
    if tls is None:
        return "plain HTTP"
    clients = {
        "none": "",
        "optional": ", client certificates verified",
        "required": ", client certificates required",
    }
    return f"HTTPS{clients[tls.client_auth]}"


def aws_profile_commands(credentials_file: Path, url: str) -> list[str]:
    """The shell commands, indented, that make the aws CLI profile ``emrml`` from the admin's credentials
    file and call the API with it. The key is read from the file when they run (the secret is never
    printed), so they can be printed before a first start writes it, as the quickstart does."""

    def read(member: str) -> str:
        return f'"$(python3 -c \'import json; print(json.load(open("{credentials_file}"))["{member}"])\')"'

    return [
        f"    aws configure set aws_access_key_id {read('aws_access_key_id')} --profile emrml",
        f"    aws configure set aws_secret_access_key {read('aws_secret_access_key')} --profile emrml",
        f"    aws configure set region {DEFAULT_REGION} --profile emrml",
        f"    aws machinelearning describe-data-sources --profile emrml --endpoint-url {url}",
    ]


def _first_start_help(credentials_file: Path, url: str, *, snippets: bool = True) -> None:
    """How to use the admin key just created; printed unwrapped so the commands can be copied.
    ``snippets`` False: without the aws CLI and boto3 ones (the quickstart printed its own)."""
    lines = [
        "",
        "First start: created user 'admin' with an access key. Its credentials are in",
        f"    {credentials_file}",
        "(readable by you only). Keep them secret. More users: emrml users create NAME, then",
        "emrml keys create NAME.",
        "",
    ]
    if not snippets:
        typer.echo("\n".join(lines), err=True)
        return
    lines += [
        "AWS CLI profile:",
        *aws_profile_commands(credentials_file, url),
        "",
        "boto3:",
        "    import json, boto3",
        f'    saved = json.load(open("{credentials_file}"))',
        '    credentials = {name: saved[name] for name in ("aws_access_key_id", "aws_secret_access_key")}',
        f'    ml = boto3.client("machinelearning", endpoint_url="{url}", region_name="{DEFAULT_REGION}",',
        "                      **credentials)",
        "",
    ]
    if url.startswith("https://"):
        lines += [*PRIVATE_CA_NOTE, ""]
    typer.echo("\n".join(lines), err=True)


#: Printed with the snippets of an HTTPS server: how boto3 and the aws CLI trust a private CA.
PRIVATE_CA_NOTE = (
    'A certificate from a private CA: add --ca-bundle CA.pem to aws commands and verify="CA.pem" to',
    "boto3.client (client certificates: config=botocore.config.Config(client_cert=(CERT, KEY))).",
)


def _start_error(exc: Exception, settings: Settings) -> AmazonMLError:
    """What a server that cannot start says: ``exc`` itself, or what the metastore's refusal means (a full
    disk, a lock held too long); any other database error goes up, with its traceback."""
    if isinstance(exc, AmazonMLError):
        return exc
    from emrml.service.metastore import out_of_service

    error = out_of_service(exc, settings.database_url)
    if error is None:
        raise exc
    return error


def served_url(settings: Settings, host: str, port: int, *, tls: bool, public_url: str | None = None) -> str:
    """The URL clients reach the server at: ``public_url`` given, else the setting, but one left at its
    default follows the scheme, host and port really served."""
    configured = settings.public_url != DEFAULT_PUBLIC_URL and settings.public_url
    return public_url or configured or f"{'https' if tls else 'http'}://{_url_host(host)}:{port}"


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, "--port", metavar="PORT", min=1, max=65535, help="TCP port."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Accept unsigned requests from anyone (local experiments only)."
    ),
    workers_jobs: int | None = typer.Option(
        None,
        "--workers-jobs",
        metavar="N",
        min=0,
        help="Jobs run at once (default: the max_concurrent_jobs setting, 25); 0 runs none.",
    ),
    public_url: str | None = typer.Option(
        None,
        "--public-url",
        metavar="URL",
        help="URL clients reach this server at, returned as real-time EndpointUrl "
        "(default: the public_url setting, else http://HOST:PORT).",
    ),
    max_request_bytes: int = typer.Option(
        DEFAULT_MAX_REQUEST_BYTES,
        "--max-request-bytes",
        metavar="BYTES",
        min=1024,
        help="Largest request body accepted (413 beyond).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        metavar="N",
        min=1,
        help="Server processes on the port, each with the mounted models; rate limits and job slots are "
        "shared out among them.",
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        metavar="<local|spark>",
        help="local, or spark: run every job on one long-running Spark application (setting spark_master; "
        "docs/spark.md).",
    ),
    tls_cert: str | None = typer.Option(
        None,
        "--tls-cert",
        metavar="PEM",
        help="Serve HTTPS with this PEM certificate chain (needs --tls-key).",
    ),
    tls_key: str | None = typer.Option(
        None, "--tls-key", metavar="PEM", help="The certificate's PEM private key."
    ),
    tls_client_ca: str | None = typer.Option(
        None,
        "--tls-client-ca",
        metavar="PEM",
        help="PEM CA certificate(s) that sign client certificates (mTLS).",
    ),
    tls_client_auth: str | None = typer.Option(
        None,
        "--tls-client-auth",
        metavar="<none|optional|required>",
        help="none, optional (a certificate, if sent, must verify) or required (clients without one are "
        "refused); default: required when --tls-client-ca is given.",
    ),
    console_process: bool = typer.Option(
        True,
        "--console-process/--console-in-process",
        help="Serve the console from a process of its own (default), so pages never slow the API down.",
    ),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        "--forwarded-allow-ips",
        metavar="PROXY,...",
        help="The proxies in front (IP addresses and networks, comma-separated) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (default: the forwarded_allow_ips setting, else none: the "
        "connection's address is the client's).",
    ),
) -> None:
    """Serve the Amazon ML API (boto3, aws CLI) with SigV4 authentication and run queued jobs."""
    start_server(
        ctx,
        host=host,
        port=port,
        no_auth=no_auth,
        workers_jobs=workers_jobs,
        public_url=public_url,
        max_request_bytes=max_request_bytes,
        workers=workers,
        engine=engine,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        tls_client_auth=tls_client_auth,
        console_process=console_process,
        forwarded_allow_ips=forwarded_allow_ips,
    )


def start_server(
    ctx: typer.Context,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    no_auth: bool = False,
    workers_jobs: int | None = None,
    public_url: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    workers: int = 1,
    engine: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_client_ca: str | None = None,
    tls_client_auth: str | None = None,
    console_process: bool = True,
    forwarded_allow_ips: str | None = None,
    snippets: bool = True,
) -> None:
    """``emrml serve`` with its options as plain values (the quickstart's ``--serve`` calls it too, with
    ``snippets`` False: it printed its own aws CLI and boto3 calls)."""
    from emrml.core.arrow import hide_pandas
    from emrml.service.app import EmrML
    from emrml.service.auth import ensure_admin
    from emrml.service.identity import Identities
    from emrml.service.logins import Logins, ensure_admin_password
    from emrml.service.metastore import home_lock
    from emrml.web import server
    from emrml.web.access_log import configure_logging
    from emrml.web.tls import TlsSettings

    hide_pandas()
    try:
        settings = _settings(ctx)
        if forwarded_allow_ips is not None:
            settings = dataclasses.replace(settings, forwarded_allow_ips=forwarded_allow_ips)
        tls = TlsSettings.from_options(
            tls_cert or settings.tls_cert,
            tls_key or settings.tls_key,
            tls_client_ca or settings.tls_client_ca,
            tls_client_auth or settings.tls_client_auth,
        )
    except AmazonMLError as exc:
        typer.echo(f"error: {exc.type_name}: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if tls is not None and workers > 1:
        typer.echo(
            "error: InvalidInputException: HTTPS (--tls-*) is served by one process: drop --workers", err=True
        )
        raise typer.Exit(2)
    url = served_url(settings, host, port, tls=tls is not None, public_url=public_url)
    settings = dataclasses.replace(settings, public_url=url)
    if engine is not None:
        if engine not in ("local", "spark"):
            message = f"--engine must be local or spark (got {engine!r})"
            typer.echo(f"error: InvalidInputException: {message}", err=True)
            raise typer.Exit(2)
        settings = dataclasses.replace(settings, engine=engine)
        os.environ["EMRML_ENGINE"] = engine  # the server processes of --workers read their settings anew
    log_as_lines(enabled=False)  # the server's own format, below, and no line twice
    configure_logging()
    try:
        service = EmrML(settings)
    except AmazonMLError as exc:
        typer.echo(f"error: {exc.type_name}: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    # Plain echo, not rich: a server draws no table, and rich would add 15-20 ms to its start.
    if no_auth:
        typer.secho(
            f"WARNING: Authentication is OFF: anyone who can reach {host}:{port} can read, create and delete "
            "everything, as the account's root user. Use --no-auth for local experiments only.",
            err=True,
            fg="red",
            bold=True,
        )
    from sqlalchemy.exc import DBAPIError  # (loaded with the metastore by now)

    # One server of a home at a time: two started at once on a new home would both write
    # admin-credentials.json, the second's console password or access key replacing the first's.
    try:
        with home_lock(settings.home, ".first-start.lock"):
            created = (
                None
                if no_auth
                else ensure_admin(
                    Identities(service.sessions, settings.home, settings.account_id), settings.home
                )
            )
            ensure_admin_password(Logins(service.sessions), settings.home)
    except (AmazonMLError, DBAPIError) as exc:  # a secrets.key that holds no key, a disk full
        service.close()
        error = _start_error(exc, settings)
        typer.echo(f"error: {error.type_name}: {error.message}", err=True)
        raise typer.Exit(error.exit_code) from None
    if created is not None:
        _first_start_help(created[1], url, snippets=snippets)
    slots = settings.max_concurrent_jobs if workers_jobs is None else workers_jobs
    proxies = settings.forwarded_allow_ips
    typer.echo(
        f"emrml API at {url} (listening on {host}:{port}"
        f"{f' with {workers} processes' if workers > 1 else ''}; {_transport(tls)}; "
        f"{'no authentication' if no_auth else 'SigV4 authentication'}; up to {slots} job(s) at once"
        f"{f'; X-Forwarded-For believed from {proxies}' if proxies else ''})",
        err=True,
    )
    typer.echo(
        f"console {url}/console/ (user admin; password in {settings.home / 'admin-credentials.json'}, "
        "mode 0600)",
        err=True,
    )
    collector.resume()  # the start's imports are done (``emrml.collector``)
    with contextlib.ExitStack() as stack:
        socket_path = None
        if console_process:
            from emrml.web.console_process import ConsoleProcess

            socket_path = stack.enter_context(ConsoleProcess(settings.home, url)).socket_path
        if workers > 1:
            service.close()
            options = {
                "home": str(settings.home),
                "public_url": url,
                "auth": not no_auth,
                "max_body_bytes": max_request_bytes,
                "job_slots": slots,
                "console_socket": socket_path,
            }
            server.serve_workers(
                options, host, port, workers, forwarded_allow_ips=settings.forwarded_allow_ips
            )
            return
        app = server.create_app(
            service,
            auth=not no_auth,
            max_body_bytes=max_request_bytes,
            job_slots=slots,
            console_socket=socket_path,
        )
        try:
            server.serve(app, host, port, tls=tls, forwarded_allow_ips=settings.forwarded_allow_ips)
        except KeyboardInterrupt:
            pass
        finally:
            service.close()
