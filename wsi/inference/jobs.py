"""Which maps to compute: one job per slide (slide, tissue mask, output), and whether a map that exists is done.

One slide: ``WSI`` a slide file, ``MASK`` its ``.npy`` tissue mask, ``NPY`` the output file (overwritten, as the
original). Many slides: ``WSI`` a folder of slides (or a ``.txt`` list of slide paths, one a line), ``MASK`` the
folder of masks ``<stem>.npy`` and ``NPY`` the output folder, one ``<stem>.npy`` per slide; maps that are done
(:func:`not_done` says ``''``) are skipped, so an interrupted run resumes.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from wsi.arrays import ArrayFileError, SlideRef, read_sidecar, settings_changed, sidecar_path
from wsi.data.slide import SlideError, list_slides, names_many_slides, open_slide
from wsi.errors import InputError
from wsi.fileio import check_writable, file_digest, is_complete_npy, npy_header, npy_path
from wsi.inference.damaged import failed_report_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One map to compute: slide, tissue mask and output ``.npy``."""

    slide: Path
    mask: Path
    output: Path


def plan_jobs(wsi, mask, npy):
    """The maps to compute, sorted by slide stem: one job for a slide file, one per slide for a folder or list.

    Raises :class:`~wsi.errors.InputError` (one line) when the arguments do not form a set: a folder of slides
    with a mask file, an output that is an existing file, two slides with the same stem.
    """
    if not names_many_slides(wsi):
        check_writable(npy)  # an existing folder is refused, not written beside as <folder>.npy
        check_writable(npy_path(npy))
        return [Job(Path(wsi), Path(mask), npy_path(npy))]
    slides = sorted(list_slides(wsi), key=lambda p: (p.stem, str(p)))
    mask, npy = Path(mask), Path(npy)
    if not mask.is_dir():
        raise InputError(f"{mask}: with many slides ({wsi}), MASK must be the folder of tissue masks <stem>.npy")
    if npy.exists() and not npy.is_dir():
        raise InputError(f"{npy}: with many slides ({wsi}), NPY must be the output folder, not a file")
    check_writable(npy, folder=True)
    stems = [p.stem for p in slides]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise InputError(f"{wsi}: several slides share the stem {duplicates[0]!r}; their maps would overwrite "
                         "each other")
    return [Job(p, mask / f"{p.stem}.npy", npy / f"{p.stem}.npy") for p in slides]


def job_files(job):
    """``(outputs, inputs)`` of a job: the map, its sidecar and failure report; the slide, the mask and its
    sidecar."""
    return ([job.output, sidecar_path(job.output), failed_report_path(job.output)],
            [job.slide, job.mask, sidecar_path(job.mask)])


def not_done(job, settings):
    """Why ``job.output`` must be computed again, or ``''`` when a re-run may keep it.

    Kept only when it is a complete float64 map of the mask's shape, its sidecar describes it and names this
    slide (quick hash), and it was made with these ``settings`` (checkpoint, config and mask bytes, mode, 8-fold
    average); a map with positions that could not be read (a ``.failed.txt`` beside it) is not finished.
    """
    header = npy_header(job.mask)
    if header is None or len(header[0]) != 2 or not is_complete_npy(job.output, header[0], "float64"):
        return "it is not a complete map of its mask's shape"
    if failed_report_path(job.output).exists():
        return f"{failed_report_path(job.output).name} lists positions that could not be read"
    try:
        info = read_sidecar(job.output)
        if info is not None and tuple(info.shape) != tuple(header[0]):
            return "its sidecar describes another shape"
        with open_slide(job.slide) as slide:
            if info is not None and not info.slide.same_slide(SlideRef.of(slide)):
                return f"it was made from another slide ({info.slide.name})"
    except (ArrayFileError, SlideError) as err:
        return str(err)
    if info is None:  # not written by this pipeline (the original's map?): not replaced, but said
        logger.warning("%s: no sidecar says how it was made: kept as it is (--overwrite computes it again)",
                       job.output)
        return ""
    return settings_changed(info, mask_sha256=file_digest(job.mask), **settings)
