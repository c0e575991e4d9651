"""``python -m emrml``: the command line."""

from emrml.cli import app

# The guard matters: job workers are spawned processes that import the main module again.
if __name__ == "__main__":
    app(prog_name="emrml")
