"""``python -m emrml.stream STREAM_ID``: run one consumer of a stream until it stops (the process that
``StartStream`` spawns; ``emrml stream run`` is the same in the foreground). Settings come from the
environment (``EMRML_*``), as for every emrml process."""

from __future__ import annotations

import logging
import os
import signal
import sys

from emrml.config import Settings
from emrml.errors import AmazonMLError
from emrml.service.confinement import OWNER_ONLY_UMASK
from emrml.stream.consumer import Consumer


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m emrml.stream STREAM_ID", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.umask(OWNER_ONLY_UMASK)  # its dead letters and outputs are owner-only, as a job's files
    consumer = Consumer(Settings.load(), argv[0])
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: consumer.stop())
    try:
        consumer.run()
    except AmazonMLError as exc:
        logging.error("stream %s: %s: %s", argv[0], exc.type_name, exc.message)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
