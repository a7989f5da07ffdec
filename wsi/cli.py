"""What every script in ``wsi/bin`` shares: logging set-up and one-line errors.

A script builds its parser in ``get_args_parser()``, does its work in ``run(args)`` and has
``main(argv=None)`` return ``wsi.cli.run_command(run, args)``, so tests can call ``main([...])``.
"""

import logging
import sys
from pathlib import Path

from wsi.errors import WSIError

LOG_FORMAT = "%(asctime)s, %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup_logging(level=logging.INFO):
    """Configure the root logger once; ``%(asctime)s`` replaces the original's hand-made time stamps."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=DATE_FORMAT)
    else:
        root.setLevel(level)


def run_command(run, args, prog=None):
    """Call ``run(args)`` and turn a :class:`WSIError` into one line on stderr and exit status 2.

    Returns the exit status: ``run``'s integer return value, or 0 when it returns None.
    """
    prog = prog or getattr(run, "__module__", "wsi").rsplit(".", 1)[-1]
    if prog == "__main__":  # run as `python wsi/bin/<name>.py` or `python -m wsi.bin.<name>`: name the script
        prog = Path(sys.argv[0]).stem or "wsi"
    setup_logging()
    try:
        status = run(args)
    except WSIError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)
