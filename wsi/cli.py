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


_current_program = None  # the script run_command is running, for the error lines of for_each_input


def program_name(run=None):
    """The script's name for error lines: the module of ``run``, or the file run as ``__main__``."""
    if run is None and _current_program:
        return _current_program
    prog = getattr(run, "__module__", "wsi").rsplit(".", 1)[-1] if run is not None else "__main__"
    if prog == "__main__":  # run as `python wsi/bin/<name>.py` or `python -m wsi.bin.<name>`: name the script
        prog = Path(sys.argv[0]).stem or "wsi"
    return prog


def for_each_input(items, work, *, what, empty):
    """Call ``work(item)`` for every item of a folder mode, going on after an item that fails.

    A :class:`WSIError` costs its item only: it is printed as one line ``X: error: ...`` and the others are still
    done. Returns the exit status: 0 when every item succeeded, 1 when some failed (a partial failure), 2 when
    all did (as a bad input). Raises
    :class:`~wsi.errors.InputError` with the message ``empty`` when there is nothing to do.
    """
    from tqdm import tqdm

    from wsi.errors import InputError

    items = list(items)
    if not items:
        raise InputError(empty)
    failed = []
    for item in tqdm(items, desc=what, unit="file", disable=len(items) < 2):
        try:
            work(item)
        except WSIError as err:
            print(f"{program_name()}: error: {err}", file=sys.stderr)
            failed.append(item)
    if failed:
        logging.getLogger(__name__).warning("%d of %d %s failed: %s", len(failed), len(items), what,
                                            ", ".join(Path(str(p)).name for p in failed[:10]))
        return 2 if len(failed) == len(items) else 1  # nothing usable is a bad input; some is a partial failure
    return 0


def run_command(run, args, prog=None):
    """Call ``run(args)`` and turn a :class:`WSIError` into one line on stderr and exit status 2.

    Returns the exit status: ``run``'s integer return value, or 0 when it returns None.
    """
    global _current_program
    prog = _current_program = prog or program_name(run)
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
