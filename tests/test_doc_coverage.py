"""Every CLI command and option is in README.md's CLI summary, and every option the docs give a command is
one it has; every operation the server answers is in docs/api-compatibility.md; every setting the docs
name exists."""

import re
from pathlib import Path
from typing import Any

import typer

from emrml.cli import app
from emrml.service.app import EmrML  # noqa: F401  (registers every operation)
from emrml.service.operations import registered

ROOT = Path(__file__).resolve().parents[1]


def summary_statements() -> list[str]:
    """The commands of README's CLI block, one per statement, continuation lines joined, comments cut."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## CLI\n\n```text\n", 1)[1].split("```", 1)[0]
    lines: list[str] = []
    for line in block.splitlines():
        line = re.sub(r"\s{2,}#.*$", "", line)
        if line.startswith(" ") and lines:
            lines[-1] += " " + line.strip()
        elif line.strip():
            lines.append(line)
    return [part.strip() for line in lines for part in line.split(" ; ")]


def documented() -> dict[tuple[str, ...], set[str]]:
    """Command path (every `a|b` alternative spelled out) → the options its statement names."""
    found: dict[tuple[str, ...], set[str]] = {}
    for statement in summary_statements():
        words = statement.split()[1:]  # after "emrml"
        names = [word for word in words if re.fullmatch(r"[a-z][a-z|-]*", word)][:2]
        options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", statement))
        paths: list[tuple[str, ...]] = [()]
        for name in names:
            paths = [(*path, choice) for path in paths for choice in name.split("|")]
        for path in paths:
            for length in (1, 2):
                found.setdefault(path[:length], set()).update(options)
    return found


def commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if hasattr(command, "commands"):
        return [leaf for name, sub in command.commands.items() for leaf in commands(sub, (*path, name))]
    return [(path, command)]


def test_every_command_and_option_is_in_the_readme_summary() -> None:
    summary = documented()
    missing = []
    for path, command in commands(typer.main.get_command(app)):
        if path not in summary:
            missing.append(" ".join(path))
            continue
        for param in command.params:
            flags = [flag for flag in param.opts + param.secondary_opts if flag.startswith("-")]
            if flags and not getattr(param, "hidden", False) and not set(flags) & summary[path]:
                missing.append(f"{' '.join(path)} {flags[0]}")
    assert missing == []


def named_options(text: str) -> list[tuple[tuple[str, ...], str, str]]:
    """(command path, option, the text naming it) of every `emrml COMMAND ... --option` in a page."""
    root = typer.main.get_command(app)
    text = re.sub(r"\\\n\s*", " ", text)  # a shell line continued on the next
    found = []
    for line in text.splitlines():
        for part in re.split(r"`|;|\s#\s", line):
            match = re.search(r"\bemrml((?:\s+[a-z][a-z|-]*)+)(.*)", part)
            if not match:
                continue
            command, path = root, ()
            for word in match.group(1).split():
                subcommands = getattr(command, "commands", {})
                if word.split("|")[0] not in subcommands:
                    break
                command, path = subcommands[word.split("|")[0]], (*path, word.split("|")[0])
            if hasattr(command, "commands"):
                continue
            for option in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", match.group(2)):
                found.append((path, option, part.strip()))
    return found


def test_the_docs_name_only_options_the_commands_have() -> None:
    root = typer.main.get_command(app)
    leaves = dict(commands(root))
    global_options = {flag for param in root.params for flag in param.opts} | {"--help"}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale = []
    for page in pages:
        for path, option, text in named_options(page.read_text(encoding="utf-8")):
            flags = {flag for param in leaves[path].params for flag in param.opts + param.secondary_opts}
            if option not in flags | global_options:
                stale.append(f"{page.name}: emrml {' '.join(path)} {option} ({text})")
    assert len(pages) > 5
    assert stale == []


def test_every_operation_is_in_api_compatibility() -> None:
    page = (ROOT / "docs" / "api-compatibility.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| ([A-Z][A-Za-z0-9]+) \|", page, re.MULTILINE))
    assert len(registered()) >= 38
    assert sorted(set(registered()) - listed) == []


def test_the_docs_name_only_settings_that_exist() -> None:
    """Every ``EMRML_*`` variable the docs name is a setting (``Settings`` field) or one the code or the
    tests read, and every key of an ``emrml.toml`` block is a setting: a misspelt one is silently ignored
    by a user who copies it."""
    import dataclasses

    from emrml.config import Settings

    fields = {field.name for field in dataclasses.fields(Settings)}
    variable = re.compile(r"\bEMRML_[A-Z0-9_]*[A-Z0-9]")
    read = {
        name
        for folder in ("src", "tests")
        for path in (ROOT / folder).rglob("*.py")
        for name in variable.findall(path.read_text(encoding="utf-8"))
    }
    pages = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "bench").glob("*.md")),
    ]
    unknown = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for name in sorted(set(variable.findall(text))):
            if name.removeprefix("EMRML_").lower() not in fields and name not in read:
                unknown.append(f"{page.name}: {name}")
        for block in re.findall(r"^\s*```toml\n(.*?)^\s*```", text, re.MULTILINE | re.DOTALL):
            # The keys before the first [table]: a table's keys are its own (names of connections, ...).
            top = re.split(r"^\s*\[", block, maxsplit=1, flags=re.MULTILINE)[0]
            for key in re.findall(r"^\s*([a-z][a-z0-9_]*)\s*=", top, re.MULTILINE):
                if key not in fields:
                    unknown.append(f"{page.name}: emrml.toml key {key}")
    assert len(pages) > 5
    assert unknown == []
