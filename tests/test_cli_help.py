"""Each command's help names what its options take (``--input URI``, ``--wait SECONDS``), never the
placeholder typer shows for an option that names nothing: its value's type (``--input <str>``)."""

from __future__ import annotations

import re

from cli_helpers import every_command, invoke


def test_no_command_s_help_shows_a_type_as_the_value_of_an_option() -> None:
    helps = {"emrml": invoke("--help", columns=200).stdout}
    # Typer's placeholder is the type's name in angle brackets: those of every option, and the usual ones.
    placeholders = {"<str>", "<int>", "<float>", "<path>", "<file>", "<directory>", "<text>", "<filename>"}
    for path, command in every_command():
        helps[path] = invoke(*path.split()[1:], "--help", columns=200).stdout
        placeholders |= {f"<{param.type.name}>" for param in command.params}
    pattern = re.compile("|".join(re.escape(placeholder) for placeholder in sorted(placeholders)))
    shown = {path: pattern.findall(text) for path, text in helps.items() if pattern.search(text)}
    assert shown == {}
    assert len(helps) > 50
    start = helps["emrml stream start"]
    for option in ("--input URI", "--output URI", "--timestamp SECONDS", "--consumers N", "--name NAME"):
        assert option in start, option
    assert "--wait SECONDS" in helps["emrml stream stop"]
    assert "--home DIR" in helps["emrml"]
