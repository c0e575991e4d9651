"""Every ``emrml`` command line in the shell blocks of README.md and docs/*.md parses as written: its
sub-commands exist, its options are the command's, its arguments as many as the command takes and of its
types (a choice among its choices, a number where a number goes). A renamed option or command breaks this
test, not the reader who copies the line. Parsed by the CLI's own parser, nothing run."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from emrml.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The info strings of a fenced block of shell commands. (README's ```text CLI summary is a synopsis,
#: `[--opt]` and `a|b`: test_doc_coverage checks it.)
SHELL = {"bash", "sh", "shell", "console"}
OPERATORS = {";", "&&", "||", "|", "&"}
ELISION = {"...", "…"}


def shell_lines(text: str) -> Iterator[str]:
    """The lines of a page's shell blocks, a line continued by a backslash joined to the next."""
    for info, block in re.findall(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", text, re.MULTILINE | re.DOTALL):
        if info in SHELL:
            yield from re.sub(r"\\\n\s*", " ", block).splitlines()


def emrml_commands(line: str) -> list[list[str]]:
    """The arguments of each ``emrml`` a shell line runs (``a ; b``, ``a && b``), as the shell splits them,
    comments cut. A command runs emrml when it is ``emrml`` after any ``NAME=value`` assignments and an
    ``uv run [options]``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[list[str]] = []
    words: list[str] = []
    for token in [*lexer, ";"]:
        if token not in OPERATORS:
            words.append(token)
            continue
        start = 0
        while start < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[start]):
            start += 1
        if words[start : start + 2] == ["uv", "run"]:
            start += 2
            while start < len(words) and words[start].startswith("-"):
                start += 1
        if words[start : start + 1] == ["emrml"]:
            found.append(words[start + 1 :])
        words = []
    return found


def parse(args: list[str]) -> None:
    """Parse ``emrml ARGS`` as the CLI does before it runs a command: the root's options, each group's
    sub-command, the command's options and arguments. Raises the parser's error. After an elision
    (``emrml datasource create ...``) the command's options are not required."""
    elided = next((i for i, arg in enumerate(args) if arg in ELISION), None)
    command = typer.main.get_command(app)
    ctx = command.make_context("emrml", args[:elided])
    while hasattr(command, "resolve_command"):
        # What the group left for its sub-command (click keeps the sub-command's name apart).
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert name is not None and command is not None  # else resolve_command raised
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=elided is not None)


def documented_commands() -> list[tuple[str, list[str]]]:
    return [
        (f"{page.name}: {line.strip()}", args)
        for page in PAGES
        for line in shell_lines(page.read_text(encoding="utf-8"))
        for args in emrml_commands(line)
    ]


def test_the_docs_show_emrml_command_lines_in_shell_blocks() -> None:
    where = {text.split(":")[0] for text, _ in documented_commands()}
    assert {"README.md", "streams.md", "security.md", "spark.md", "console.md"} <= where
    assert len(documented_commands()) >= 30


def test_every_emrml_command_line_of_the_docs_parses() -> None:
    wrong = []
    for text, args in documented_commands():
        try:
            parse(args)
        except Exception as error:  # the parser's UsageError (of typer's own copy of click), or any other
            wrong.append(f"{text}: {getattr(error, 'format_message', error.__str__)()}")
    assert wrong == []


def mentions(text: str) -> Iterator[str]:
    """The ``emrml ...`` a page names in prose (code spans) and in its CLI synopsis (```text blocks)."""
    fenced = r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```"
    for info, block in re.findall(fenced, text, re.MULTILINE | re.DOTALL):
        if info == "text":
            yield from (part for line in block.splitlines() for part in line.split(" ; "))
    prose = re.sub(fenced, "", text, flags=re.MULTILINE | re.DOTALL)
    yield from re.findall(r"`(emrml\s[^`]*)`", prose)


def unknown_commands(mention: str) -> list[str]:
    """The sub-commands a mention names that the CLI does not have: the words after ``emrml`` while they
    name sub-commands (``show|wait|delete``: each), up to the first word of another kind (an option, an
    argument, a placeholder)."""
    words = mention.split()[1:]
    paths: list[tuple[object, str]] = [(typer.main.get_command(app), "emrml")]
    unknown = []
    for word in words:
        if not re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", word):
            break
        groups = [(command, path) for command, path in paths if hasattr(command, "commands")]
        if not groups:
            break
        paths = []
        for command, path in groups:
            for name in word.split("|"):
                sub = command.commands.get(name)  # type: ignore[attr-defined]
                if sub is None:
                    unknown.append(f"{path} {name}")
                else:
                    paths.append((sub, f"{path} {name}"))
    return unknown


def test_every_sub_command_the_docs_name_exists() -> None:
    unknown = [
        f"{page.name}: {name} (`{mention}`)"
        for page in PAGES
        for mention in mentions(page.read_text(encoding="utf-8"))
        for name in unknown_commands(mention)
    ]
    named = [mention for page in PAGES for mention in mentions(page.read_text(encoding="utf-8"))]
    assert len(named) > 80
    assert unknown == []


def test_a_mention_of_a_missing_sub_command_is_found() -> None:
    assert unknown_commands("emrml stream show|shwo ID --x") == ["emrml stream shwo"]
    assert unknown_commands("emrml users create bob") == []  # bob: the argument of a command
    assert unknown_commands("emrml … delete") == []


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("emrml stream strat --id st-1", "No such command 'strat'"),
        ("emrml stream start --id st-1 --modle ml-1", "No such option: --modle"),
        ("emrml model create --id ml-1 --type BINAR --datasource ds-1", "'BINAR' is not one of"),
        ("emrml model show", "Missing argument"),
        ("emrml model show ml-1 ml-2", "unexpected extra argument"),
        ("X=1 uv run --no-dev emrml mdoel list ; ls", "No such command 'mdoel'"),
        ("emrml datasourse create ...", "No such command 'datasourse'"),
    ],
)
def test_a_wrong_command_line_is_found(line: str, error: str) -> None:
    (args,) = emrml_commands(line)
    with pytest.raises(Exception) as raised:
        parse(args)
    assert error in raised.value.format_message()  # type: ignore[attr-defined]


def test_the_command_lines_of_a_page_are_found() -> None:
    page = (
        "```sh\nexport A=1\nemrml stream list   # all\n"
        "pip install 'emrml[spark]' && emrml \\\n  model show ml\n```\n"
        "```json\nemrml model list\n```\n"
    )
    assert [args for line in shell_lines(page) for args in emrml_commands(line)] == [
        ["stream", "list"],
        ["model", "show", "ml"],
    ]
