"""``python -m emrml.stream STREAM_ID``: run one consumer of a stream until it stops (the process that
``StartStream`` spawns; ``emrml stream run`` is the same in the foreground). Settings come from the
environment (``EMRML_*``), as for every emrml process."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

from emrml.config import Settings
from emrml.errors import AmazonMLError
from emrml.service.confinement import OWNER_ONLY_UMASK
from emrml.service.stream_processes import READY_FD
from emrml.stream.consumer import Consumer

#: The exit code of a consumer ended for not stopping when asked (``Consumer.run``'s ``on_hung``).
HUNG = 75


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m emrml.stream STREAM_ID", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.umask(OWNER_ONLY_UMASK)  # its dead letters and outputs are owner-only, as a job's files
    consumer = Consumer(Settings.load(), argv[0])
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: consumer.stop())
    _tell_started()
    try:
        consumer.run(on_hung=lambda: os._exit(HUNG))
    except AmazonMLError as exc:
        logging.error("stream %s: %s: %s", argv[0], exc.type_name, exc.message)
        return exc.exit_code
    return 0


def _tell_started() -> None:
    """Tell the process that spawned this one (``service.stream_processes.await_started``) that it runs:
    from now on the consumer records its own failures."""
    descriptor = os.environ.pop(READY_FD, None)
    if descriptor is not None and descriptor.isdigit():
        with contextlib.suppress(OSError):
            os.write(int(descriptor), b"1")
            os.close(int(descriptor))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
