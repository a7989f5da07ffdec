"""What every script in ``wsi/bin`` shares: logging set-up, one-line errors, checked numbers and outputs.

A script builds its parser in ``get_args_parser()``, does its work in ``run(args)`` and has
``main(argv=None)`` return ``wsi.cli.run_command(run, args)``, so tests can call ``main([...])``. ``run``
starts with :func:`check_outputs` on every output it will write, so an unwritable output fails before any work.
Numeric options use the argparse types below (:func:`count`, :func:`positive`, :func:`probability`, ...), so
their ranges are checked in one place.
"""

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path

from wsi.errors import OutputError, ParameterError, WSIError
from wsi.fileio import check_not_inputs, check_writable

LOG_FORMAT = "%(asctime)s, %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``X: error: <what is wrong>`` on stderr and exit status 2,
    without argparse's usage block (``-h`` prints it)."""

    def error(self, message):
        name = " ".join(part.removesuffix(".py") for part in self.prog.split())
        self.exit(2, f"{name}: error: {message}\n")


def setup_logging(level=logging.INFO):
    """Configure the root logger once; ``%(asctime)s`` replaces the original's hand-made time stamps."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=DATE_FORMAT)
    else:
        root.setLevel(level)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that ``finally`` blocks (temporary files) run."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _default_sigterm_in_child():
    # A forked worker (a pool's, a DataLoader's) must not keep the handler: it dies as SIGTERM's default would,
    # silently, and the main process cleans up and prints the one line. Reset at the fork, not when the signal
    # comes: a Python handler only sets a flag, which a worker blocked waiting for its next task may never see.
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_sigterm_in_child)


@contextlib.contextmanager
def _sigterm_raises():
    """While the block runs, SIGTERM raises :class:`Terminated` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_current_program = None  # the script run_command is running, for the error lines of for_each_input


def program_name(run=None):
    """The script's name for error lines: the module of ``run``, or the file run as ``__main__``."""
    if run is None and _current_program:
        return _current_program
    prog = getattr(run, "__module__", "wsi").rsplit(".", 1)[-1] if run is not None else "__main__"
    if prog == "__main__":  # run as `python wsi/bin/<name>.py` or `python -m wsi.bin.<name>`: name the script
        prog = Path(sys.argv[0]).stem or "wsi"
    return prog


def message(err):
    """The one line a script prints for ``err``: a :class:`~wsi.errors.ParameterError` names its parameters as the
    script's options (``--radius``), the library's own messages name parameters as they are called."""
    return err.as_option() if isinstance(err, ParameterError) else str(err)


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
            print(f"{program_name()}: error: {message(err)}", file=sys.stderr)
            failed.append(item)
    if failed:
        logging.getLogger(__name__).warning("%d of %d %s failed: %s", len(failed), len(items), what,
                                            ", ".join(Path(str(p)).name for p in failed[:10]))
        return 2 if len(failed) == len(items) else 1  # nothing usable is a bad input; some is a partial failure
    return 0


def run_command(run, args, prog=None):
    """Call ``run(args)`` and turn a :class:`WSIError` into one line on stderr and exit status 2.

    An ``OSError`` that escaped as such (a file that could not be read or written) is one line and exit 2 too.
    Ctrl-C and SIGTERM exit with 130 and 143 after the temporary files of this process are removed. Returns the
    exit status: ``run``'s integer return value, or 0 when it returns None.
    """
    global _current_program
    prog = _current_program = prog or program_name(run)
    setup_logging()
    try:
        with _sigterm_raises():
            status = run(args)
    except WSIError as err:
        print(f"{prog}: error: {message(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        name = err.filename if err.filename is not None else "?"
        print(f"{prog}: error: {name}: {err.strerror or err}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


def check_outputs(*paths, folders=(), inputs=()):
    """:func:`~wsi.fileio.check_writable` on each file output in ``paths`` (None skipped) and folder output in
    ``folders``; raises :class:`~wsi.errors.OutputError` for the first that cannot be written, or that is one of
    the ``inputs`` under any spelling (:func:`~wsi.fileio.check_not_inputs`: an output never replaces an input).
    """
    check_not_inputs(paths, inputs)
    for path in paths:
        if path is not None:
            check_writable(path)
    for path in folders:
        if path is not None:
            check_writable(path, folder=True)


def add_trust_checkpoint(parser):
    """``--trust_checkpoint``: the one way to load a checkpoint that weights-only loading refuses
    (:func:`wsi.model.checkpoint.load_checkpoint`)."""
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="load a checkpoint that holds objects other than weights (pickled classes or "
                             "functions) by full unpickling, which can run code stored in the file: only for a "
                             "file you trust. Default off: such a file is refused")


# Argparse types: numeric ranges checked in one place -----------------------------------------------------------
def _number(kind, text):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _at_least(kind, lowest, text):
    value = _number(kind, text)
    if value < lowest:
        raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {text.strip()}")
    return value


def count(text):
    """An integer ≥ 0 (where 0 means something: no workers, no margin)."""
    return _at_least(int, 0, text)


def positive(text):
    """An integer > 0 (sizes, batch sizes, counts that must be some)."""
    return _at_least(int, 1, text)


def finite(text):
    """A finite float (no nan, no inf)."""
    return _number(float, text)


def non_negative(text):
    """A finite float ≥ 0."""
    return _at_least(float, 0, text)


#: The largest level index a script accepts: 2**30 level-0 pixels per cell is wider than any slide.
MAX_LEVEL = 30


def int_in(lowest, highest, why=""):
    """The argparse type of an integer in [lowest, highest]; ``why`` explains the upper bound in the error."""

    def parse(text):
        value = _at_least(int, lowest, text)
        if value > highest:
            raise argparse.ArgumentTypeError(f"must be at most {highest}{why}, got {text.strip()}")
        return value

    parse.__name__ = "int"  # argparse names the type in its own messages
    return parse


#: ``--level``: a level index in [0, 30] (a slide level, or the original's ``2**level`` cell size).
level_index = int_in(0, MAX_LEVEL, f" (2**{MAX_LEVEL} level-0 pixels per cell is wider than any slide)")
#: ``--RGB_min``: an 8-bit channel value in [0, 255].
channel_value = int_in(0, 255, " (an 8-bit channel value)")


def positive_float(text):
    """A finite float > 0 (µm per pixel, scales)."""
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text.strip()}")
    return value


def probability(text):
    """A finite float in [0, 1] (thresholds, fractions, shares)."""
    value = _number(float, text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


__all__ = ["OutputError", "add_trust_checkpoint", "channel_value", "check_outputs", "count", "finite", "level_index",
           "int_in", "non_negative", "positive", "positive_float", "probability", "run_command", "setup_logging"]
