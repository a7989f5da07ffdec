"""Atomic writes: outputs appear complete or not at all; outputs that cannot be written fail in one line.

Every script writes to a temporary file in the target folder and renames it into place, so an error or an
interrupted run never leaves a partial output behind, and a re-run can trust any output file it finds.
Temporary names are ``.<stem>.<random>.<host>-<pid>.tmp<suffix>``: :func:`remove_stale_temporaries` removes
those of processes of this machine that no longer run (a run killed with ``kill -9``), leaving a concurrent
shard's alone, also one running on another machine that shares the folder (unless a day old).

:func:`check_writable` is what each script calls on its outputs before any work, so a read-only folder or an
output that is an existing folder costs nothing; an ``OSError`` while writing becomes an :class:`OutputError`
(``<path>: cannot write (<reason>)``), which the scripts print as one line with exit status 2.
"""

import contextlib
import errno
import os
import re
import signal
import socket
import tempfile
import time
from pathlib import Path

from wsi.errors import OutputError

#: The temporary names :func:`atomic_path` makes: ``.<stem>.<random>.<host>-<pid>.tmp<suffix>``.
_TEMPORARY = re.compile(r"^\..*\.([A-Za-z0-9-]+)-(\d+)\.tmp(\.[^.]*)?$")
#: A temporary of another machine older than this is stale whatever its process id (seconds).
_FOREIGN_STALE_AFTER = 24 * 3600


def _host():
    """This machine's name as it appears in temporary names (letters, digits and ``-`` only)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")
#: Temporary names of earlier versions (no process id): stale whenever found at the start of a run.
_OLD_TEMPORARY = re.compile(r"^\..*\.tmp(\.[^.]*)?$")


def _reason(err):
    """The short reason of an OSError: ``Permission denied``, ``Read-only file system``, ..."""
    return err.strerror or str(err).strip() or type(err).__name__


def check_writable(path, *, folder=False):
    """Raise :class:`OutputError` unless ``path`` can be written as an output; creates nothing.

    ``folder=False``: ``path`` is a file output, so it must not be an existing folder. ``folder=True``: ``path``
    is an output folder, so it must not be an existing file. In both cases the nearest existing ancestor must
    be a folder in which this process can create a file (probed with a temporary file, removed at once, since
    ``os.access`` says yes to root on a read-only file system). Returns ``Path(path)``.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if folder and not path.is_dir():
            raise OutputError(path, "is a file, expected an output folder")
        if not folder and path.is_dir():
            raise OutputError(path, "is a folder, expected an output file")
    probe_dir = path if folder and path.is_dir() else path.parent
    while not probe_dir.exists():
        if probe_dir.is_symlink():  # a dangling link: mkdir would fail on it
            raise OutputError(path, f"{probe_dir} is a broken link")
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise OutputError(path, f"{probe_dir} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".wsi-probe.", dir=probe_dir)
    except OSError as err:
        raise OutputError(path, _reason(err)) from None
    os.close(fd)
    os.unlink(probe)
    return path


def same_file(a, b):
    """True when the paths ``a`` and ``b`` name one file, however spelt: symbolic links, ``..``, hard links."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (yet): compare where they resolve to
        return os.path.realpath(a) == os.path.realpath(b)


def check_not_inputs(outputs, inputs):
    """Raise :class:`OutputError` when an output is one of the inputs (the same file under any spelling).

    ``outputs`` and ``inputs`` are iterables of paths (None skipped). Scripts call it before any work (through
    :func:`wsi.cli.check_outputs`), so that an output never replaces an input: ``nms.py p.npy p.npy``,
    ``probs_map.py ... mask.npy mask.npy`` (whose sidecar ``mask.json`` would be replaced too).
    """
    inputs = [Path(p) for p in inputs if p is not None]
    existing = [p for p in inputs if p.exists()]
    for output in outputs:
        if output is None:
            continue
        for source in existing:
            if same_file(output, source):
                shown = f"{source}" if os.fspath(source) == os.fspath(output) else f"{source} under another name"
                raise OutputError(output, f"it is the input {shown}; an output never replaces an input")


def _is_running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


def remove_stale_temporaries(folder, own=False):
    """Remove the temporary files that interrupted runs left in ``folder``; returns the paths removed.

    A temporary file whose process still runs (a concurrent shard writing into the same folder) is kept, and so
    are this process's own unless ``own`` (after an interruption, when none of its writes is still going on).
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    host = _host()
    for entry in folder.iterdir():
        name = entry.name
        match = _TEMPORARY.match(name)
        if match is not None and match.group(1) == host:
            pid = int(match.group(2))
            stale = (own and pid == os.getpid()) or not _is_running(pid)
        elif match is not None:
            try:
                stale = time.time() - entry.stat().st_mtime > _FOREIGN_STALE_AFTER
            except FileNotFoundError:
                continue
        else:
            stale = _OLD_TEMPORARY.match(name) is not None and not name.startswith(".wsi-probe.")
        if stale and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name keeps the suffix of ``path`` so that libraries choosing a format by suffix still work.
    On an exception (Ctrl-C and, through :func:`wsi.cli.run_command`, SIGTERM included) the temporary file is
    removed and ``path`` is left untouched. An ``OSError`` while creating, writing or renaming is raised as
    :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a folder, expected an output file")
    tmp = None
    try:
        try:
            # Ctrl-C or SIGTERM between creating the file and knowing its name would leave it behind: both
            # signals wait until the name is held, inside the block whose `finally` removes the file.
            with _signals_deferred():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(prefix=f".{path.stem}.",
                                            suffix=f".{_host()}-{os.getpid()}.tmp{path.suffix}", dir=path.parent)
                os.close(fd)
                tmp = Path(name)
        except OSError as err:
            raise OutputError(path, _reason(err)) from None
        try:
            yield tmp
            # mkstemp creates the file private (0600); give it the permissions a plain open() would have.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except OutputError:
            raise
        except OSError as err:
            if err.errno in (errno.ENOENT,) and err.filename not in (None, str(tmp), str(path)):
                raise  # an input that vanished, not this output: let the caller name it
            raise OutputError(path, _reason(err)) from None
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def _signals_deferred():
    """Block SIGINT and SIGTERM while the block runs (delivered when it ends); a no-op where unsupported."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
