"""Grid images cut from slides at listed centres: the library behind ``wsi/bin/patch_gen.py``.

A coordinate list (:mod:`wsi.data.coords`) names a slide and the level-0 centre (x, y) of each grid image. The
image is the ``patch_size``² region whose top-left corner is ``centre − patch_size / 2`` at level 0, read at
``level``; as in the original, the half-size is *not* scaled by the level's downsample when ``level != 0``.
Regions past the slide border read black.

:func:`generate_patches` writes ``<out>/<i>.png`` for the 0-based line ``i`` and ``<out>/list.txt`` (a byte copy
of the coordinate list), in worker processes that each open a slide once and keep it open. Every PNG is
written to a temporary name and renamed into place, so a re-run skips the PNGs that exist and finishes the
rest. A missing slide or a region that fails to decode does not stop the run: its lines go to
``<out>/failed.txt`` (``<i>\\t<pid>,<x>,<y>\\t<reason>`` per line, in line order).
"""

import filecmp
import logging
import multiprocessing
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from wsi.data.coords import read_coords
from wsi.data.slide import NotAFolderError, SlideError, SlideNotFoundError, find_slide, open_slide
from wsi.data.slide_handles import SlideHandles
from wsi.errors import InputError, ParameterError
from wsi.fileio import atomic_open, atomic_path, remove_stale_temporaries

logger = logging.getLogger(__name__)

#: Lines per task sent to a worker: small enough for a smooth progress bar, large enough to amortise the IPC.
CHUNK_LINES = 32
#: Slides a worker keeps open (tasks arrive grouped by slide, so a few suffice).
OPEN_SLIDES = 4


def patch_top_left(x_center, y_center, patch_size):
    """Level-0 top-left (x, y) of the ``patch_size`` region centred on (x, y), as the original computes it.

    ``int(x − patch_size / 2)``: Python's truncation, so odd sizes round towards zero.
    """
    return int(int(x_center) - patch_size / 2), int(int(y_center) - patch_size / 2)


def read_patch(slide, x_center, y_center, patch_size, level=0):
    """The ``patch_size``² RGB PIL image centred on level-0 (x, y), read at ``level`` (half-size not scaled)."""
    return slide.read_region_image(patch_top_left(x_center, y_center, patch_size), level, (patch_size, patch_size))


#: The last 12 bytes of every complete PNG: the IEND chunk (length 0, type, CRC).
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def is_complete_png(path, patch_size):
    """True when ``path`` is a whole PNG of ``patch_size``² pixels (a re-run may skip it).

    Checks the header's size and that the file ends with the IEND chunk, without decoding the pixels: cheap
    enough to run on every PNG of a large folder, and it catches junk, other sizes and copies cut short.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
            handle.seek(-len(_PNG_END), 2)
            tail = handle.read()
    except OSError:
        return False
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or tail != _PNG_END:
        return False
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return (width, height) == (patch_size, patch_size)


def check_wsi_dir(wsi_dir):
    """Raise a one-line error when ``wsi_dir`` is not a folder (a slide file given by mistake: #8, #24)."""
    wsi_dir = Path(wsi_dir)
    if wsi_dir.is_file():
        raise NotAFolderError(f"{wsi_dir}: is a file; WSI_DIR is the folder that holds the slides named <pid>.tif")
    if not wsi_dir.is_dir():
        raise SlideNotFoundError(f"{wsi_dir}: no such slide folder")
    return wsi_dir


@dataclass
class PatchGenResult:
    """What :func:`generate_patches` did: counts of PNGs written and skipped, and the failed lines."""

    written: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)  # (i, pid, x, y, reason), in line order

    @property
    def ok(self):
        return not self.failed


# Worker side -----------------------------------------------------------------------------------------------------
_slides = SlideHandles(capacity=OPEN_SLIDES)  # per process: the worker's open slides, least recently used closed


def _write_chunk(task):
    """Write the PNGs of one chunk of lines of one slide; returns (written, skipped, failures)."""
    slide_path, out_dir, patch_size, level, lines = task
    out_dir = Path(out_dir)
    written, skipped, failures = 0, 0, []
    todo = [(i, pid, x, y) for i, pid, x, y in lines if not is_complete_png(out_dir / f"{i}.png", patch_size)]
    skipped = len(lines) - len(todo)
    if not todo:
        return written, skipped, failures
    try:
        slide = _slides.get(slide_path)
        slide.check_level(level)
    except SlideError as err:
        return written, skipped, [(i, pid, x, y, str(err)) for i, pid, x, y in todo]
    for i, pid, x, y in todo:
        if (out_dir / f"{i}.png").is_dir():  # something not written by patch_gen is in the way: never removed
            failures.append((i, pid, x, y, f"{out_dir / f'{i}.png'} is a folder, expected the patch file"))
            continue
        try:
            image = read_patch(slide, x, y, patch_size, level)
        except SlideError as err:
            failures.append((i, pid, x, y, str(err)))
            continue
        with atomic_path(out_dir / f"{i}.png") as tmp:
            image.save(tmp, format="PNG")
        written += 1
    return written, skipped, failures


# Main side -------------------------------------------------------------------------------------------------------
def copy_list(coords_path, out_dir):
    """Copy the coordinate list to ``out_dir/list.txt`` (bytes as they are); nothing is written if it is there.

    Raises :class:`InputError` when ``list.txt`` exists with other content: the PNGs there belong to another list.
    """
    target = Path(out_dir) / "list.txt"
    if target.exists():
        if filecmp.cmp(coords_path, target, shallow=False):
            return target
        raise InputError(f"{target}: differs from {coords_path}; the folder holds the patches of another "
                         f"coordinate list, give a new output folder")
    with atomic_path(target) as tmp:
        shutil.copyfile(coords_path, tmp)
    return target


def generate_patches(wsi_dir, coords_path, out_dir, patch_size=768, level=0, num_process=5, progress=True):
    """Write ``out_dir/<i>.png`` for every line ``i`` of the coordinate list, and ``out_dir/list.txt``.

    Parameters
    ----------
    wsi_dir : folder of slides ``<pid>.tif`` (other OpenSlide formats are found by extension too).
    coords_path : coordinate list, ``pid,x_center,y_center`` per line (level-0 centres).
    out_dir : output folder, created with its parents.
    patch_size : side of the PNGs in pixels at ``level`` (768).
    level : pyramid level read (0); the top-left is ``centre − patch_size/2`` in level-0 pixels whatever the level.
    num_process : worker processes (5); 1 works in this process.
    progress : show a tqdm bar.

    Returns a :class:`PatchGenResult`; failed lines are also written to ``out_dir/failed.txt`` (removed when a
    run has no failures). Bad arguments raise :class:`InputError` before anything is written.
    """
    for name, value, minimum in (("patch_size", patch_size, 1), ("level", level, 0), ("num_process", num_process, 1)):
        if value < minimum:
            raise ParameterError(f"{{{name}}} must be at least {minimum}, got {value}")
    wsi_dir = check_wsi_dir(wsi_dir)
    coords_path = Path(coords_path)
    rows = read_coords(coords_path)  # line-numbered errors for blank and malformed lines
    if not rows:
        raise InputError(f"{coords_path}: no coordinates (the list is empty): nothing to write")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file, expected the output folder")

    result = PatchGenResult()
    tasks = _chunk_tasks(wsi_dir, rows, out_dir, patch_size, level, result)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in remove_stale_temporaries(out_dir):  # left by a run killed before it could clean up
        logger.info("removed %s, left by an interrupted run", path)
    copy_list(coords_path, out_dir)
    bar = tqdm(total=len(rows), unit="patch", desc="patch_gen", disable=not progress or None)
    bar.update(result.skipped + len(result.failed))
    _run_tasks(tasks, num_process, out_dir, bar, result)
    result.failed.sort()
    _write_failed_list(out_dir / "failed.txt", result.failed)
    return result


def _chunk_tasks(wsi_dir, rows, out_dir, patch_size, level, result):
    """The work of :func:`generate_patches`: one task per chunk of up to ``CHUNK_LINES`` lines of one slide,
    ``(slide_path, out_dir, patch_size, level, [(i, pid, x, y), ...])``. The lines of a slide that cannot be found
    go to ``result`` (failed, or skipped where their PNG is complete); a level a slide lacks raises up front."""
    by_pid = {}
    for i, (pid, x, y) in enumerate(rows):
        by_pid.setdefault(pid, []).append((i, pid, x, y))
    tasks = []
    for pid, lines in by_pid.items():
        try:
            slide_path = find_slide(wsi_dir, pid)
        except SlideNotFoundError as err:
            # Only the lines whose PNG is missing fail: a slide moved away after a complete run is no error.
            missing = [line for line in lines if not is_complete_png(out_dir / f"{line[0]}.png", patch_size)]
            result.skipped += len(lines) - len(missing)
            result.failed.extend((i, pid, x, y, str(err)) for i, pid, x, y in missing)
            continue
        check_level_up_front(slide_path, level)
        for start in range(0, len(lines), CHUNK_LINES):
            tasks.append((str(slide_path), str(out_dir), patch_size, level, lines[start:start + CHUNK_LINES]))
    return tasks


def _run_tasks(tasks, num_process, out_dir, bar, result):
    """Run the chunk ``tasks`` (in this process, or in a pool of ``num_process``), counting into ``result`` and
    ``bar``; whatever stops them, the pool ends, temporaries left by stopped writes go and the slides close."""
    if num_process == 1 or len(tasks) <= 1:
        outcomes = map(_write_chunk, tasks)
        pool = None
    else:
        pool = multiprocessing.Pool(min(num_process, len(tasks)), initializer=_ignore_interrupts)
        outcomes = pool.imap_unordered(_write_chunk, tasks)
    try:
        for written, skipped, failures in outcomes:
            result.written += written
            result.skipped += skipped
            result.failed.extend(failures)
            bar.update(written + skipped + len(failures))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        # A write stopped mid-way (Ctrl-C, SIGTERM) can leave its temporary: a worker's, or this process's own
        # when the signal lands as a temporary is handed over, before the block that removes it has begun.
        remove_stale_temporaries(out_dir, own=True)
        _slides.close()


def _write_failed_list(failed_path, failed):
    """``failed.txt``: ``<i>\\t<pid>,<x>,<y>\\t<reason>`` per failed line (sorted); removed when none failed."""
    if failed:
        with atomic_open(failed_path, "w") as handle:
            for i, pid, x, y, reason in failed:
                handle.write(f"{i}\t{pid},{x},{y}\t{' '.join(reason.split())}\n")
    elif failed_path.exists():
        failed_path.unlink()


def check_level_up_front(slide_path, level):
    """Raise :class:`~wsi.data.slide.LevelError` when the slide opens but lacks ``level`` (all its lines would fail).

    A slide that cannot be opened is left to the workers, whose lines then go to ``failed.txt``.
    """
    try:
        slide = open_slide(slide_path)
    except SlideError:
        return
    with slide:
        slide.check_level(level)


def _ignore_interrupts():
    """Pool workers leave Ctrl-C to the main process, which stops the pool: no traceback from each worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def summarize(result, out_dir):
    """The closing line of a run."""
    text = f"{result.written} patches written, {result.skipped} already there, {len(result.failed)} failed"
    if result.failed:
        first = result.failed[0]
        text += f" (listed in {Path(out_dir) / 'failed.txt'}; first: line {first[0] + 1}: {first[4]})"
    return text


__all__ = ["PatchGenResult", "check_wsi_dir", "copy_list", "generate_patches", "patch_top_left", "read_patch",
           "summarize"]
