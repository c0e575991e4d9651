"""The console's ready-to-run sample file (its home page's sample buttons), written for a caller as the
storage browser's upload writes a file (``service.files``): the caller's groups must grant
``storage:Write`` on it, since it is written for the caller, and ``storage:Read``, since the caller's
datasources read it; and, resolved, it must lie in the data roots and outside the home's own files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from emrml.service.confinement import check_location
from emrml.service.operations import running_as

if TYPE_CHECKING:
    from emrml.service.app import EmrML


def write_sample(app: EmrML, caller: str | None, path: Path, rows: int) -> None:
    """Write the bank-marketing sample of ``rows`` records at ``path`` unless it is there already. Written
    where it resolves, and only if that is in the data roots: whoever may write in a root could have made a
    folder of ``path`` a link to any folder the server can write. Everything is checked before anything is
    written: a refused caller leaves nothing."""
    resolved = os.path.realpath(path)
    with running_as(caller, remote=True):
        for write in (False, True):
            check_location(app, resolved, member="the sample", write=write)
    if os.path.exists(resolved):
        return
    # Imported here: the generator loads Arrow's compute kernels, which serving pages does not need.
    from emrml.samples import write_bank_sample

    write_bank_sample(Path(resolved), rows, private=True)
