"""``python -m emrml``: the command line."""

from emrml import collector

collector.pause_while_starting()  # before the command line's imports (``emrml.collector``)

from emrml.cli import app  # noqa: E402

# The guard matters: job workers are spawned processes that import the main module again.
if __name__ == "__main__":
    app(prog_name="emrml")
