"""Preflight check of a slide collection: can every slide be opened and every region decoded?

A Camelyon16 download is about 700 GB; a truncated or bit-flipped file (the original's issue #9: "Not a JPEG
file" at Tumor_049 (14466, 127610)) otherwise surfaces days later, in the middle of patch generation, training
or a probability map. :func:`check_tree` finds every slide under a folder (any suffix OpenSlide reads), opens
it, reports its levels, sizes and µm per pixel, whether it has an annotation (``<stem>.xml`` / ``.json`` anywhere
in the tree) and a label (``reference.csv`` or the ``Tumor_`` / ``Normal_`` name), and decodes its regions: a
sample of each level by default, every region of every level with ``full=True``.

Regions are read through OpenSlide, as every stage reads them, ``region`` pixels square at each level, aligned
to a grid from the level's origin. They are decoded in parallel by a thread pool (OpenSlide releases the GIL
while decoding) with one slide handle per thread: OpenSlide handles are unusable after a read error, and
:class:`wsi.data.slide.Slide` reopens its own.

A slide is *unusable* when it cannot be opened, when any region fails to decode, or when it lacks the level
the pipeline reads (``need_level``, 6: tissue masks and probability maps; ``"auto"``: each slide's level
nearest 64, :func:`wsi.geometry.nearest_level`); missing µm per pixel, annotations or
labels are warnings.

Not detected: bytes garbled *inside* a JPEG tile's compressed data, past its headers. libjpeg decodes such a tile
with a warning and wrong pixels, and OpenSlide returns them without an error, so no stage would stop on it
either. Zeroed or overwritten tile starts, truncated files and files that are no slide are all detected.
"""

import concurrent.futures
import csv
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from wsi.data.slide import RegionReadError, SlideError, open_slide, truncation
from wsi.data.slide_handles import SlideHandles
from wsi.geometry import MAP_DOWNSAMPLE, nearest_level

#: Suffixes of the formats OpenSlide reads (lower case): Aperio, Hamamatsu, Leica, MIRAX, Philips, Sakura,
#: Trestle, Ventana, Zeiss and generic tiled TIFF.
SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".czi")


@dataclass
class SlideReport:
    """What the check found about one slide. ``problems`` make it unusable; ``warnings`` do not."""

    path: Path
    level_dimensions: tuple = ()      # (width, height) per level
    level_downsamples: tuple = ()
    mpp: float = None                 # µm per level-0 pixel (x), None when the slide does not say
    annotation: Path = None           # <stem>.xml or <stem>.json found in the tree
    label: str = None                 # "Tumor" or "Normal"
    label_source: str = None          # the reference CSV, or "name"
    regions_total: int = 0            # regions of all levels
    regions_read: int = 0             # regions that decoded, of those tried
    regions_tried: int = 0            # regions tried (all of them with full=True)
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    structure: bool = False           # a problem of the pyramid's levels (no such level), not of the file

    @property
    def stem(self):
        return self.path.stem

    @property
    def usable(self):
        return not self.problems


def find_slides(root):
    """Every slide file under ``root`` (recursively, hidden folders skipped), sorted by path.

    A slide is a file whose suffix (any case) is in :data:`SLIDE_SUFFIXES`; files beside a MIRAX ``.mrxs`` in
    its data folder are not slides themselves.
    """
    root = Path(root)
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / name for name in files
                  if Path(name).suffix.lower() in SLIDE_SUFFIXES and not name.startswith(".")]
    return sorted(found)


def find_annotations(root):
    """``{stem (lower case): path}`` of every ``*.xml`` (ASAP) and ``*.json`` (NCRF) annotation under ``root``;
    an XML wins over a JSON of the same stem."""
    found = {}
    for suffix in (".json", ".xml"):
        for path in sorted(Path(root).rglob(f"*{suffix}")):
            found[path.stem.lower()] = path
    return found


def read_labels(root):
    """``{stem (lower case): (label, csv path)}`` from every ``reference*.csv`` under ``root``.

    A line is ``<slide>,<Tumor|Normal>[,...]`` (Camelyon16's ``testing/reference.csv``); the label is written
    back capitalised. Lines of other shapes are ignored (a header, a blank line).
    """
    labels = {}
    for path in sorted(Path(root).rglob("reference*.csv")):
        with open(path, newline="") as handle:
            for row in csv.reader(handle):
                if len(row) >= 2 and row[1].strip().lower() in ("tumor", "tumour", "normal"):
                    label = "Normal" if row[1].strip().lower() == "normal" else "Tumor"
                    labels[Path(row[0].strip()).stem.lower()] = (label, path)
    return labels


def label_from_name(stem):
    """Camelyon16 training slides carry their label in the name: ``Tumor_001`` / ``Normal_001`` (any case)."""
    lower = stem.lower()
    if lower.startswith("tumor_"):
        return "Tumor"
    if lower.startswith("normal_"):
        return "Normal"
    return None


def level_regions(level_dimensions, level_downsamples, region):
    """Every ``region``-square read of every level: ``[(level, (x0, y0) level 0, (w, h) at the level), ...]``.

    The grid starts at each level's origin; the last row and column are cut at the level's border.
    """
    regions = []
    for level, ((width, height), downsample) in enumerate(zip(level_dimensions, level_downsamples)):
        for y in range(0, height, region):
            for x in range(0, width, region):
                size = (min(region, width - x), min(region, height - y))
                regions.append((level, (round(x * downsample), round(y * downsample)), size))
    return regions


def sample_regions(regions, sample, seed, share=0.0):
    """A sample of ``regions`` to decode: all of the coarsest level (read by every tissue mask, and the end of
    the file in most TIFFs: a truncated download shows there), the first and last region of every level,
    ``share`` of each level's regions (rounded up) and ``sample`` more drawn at random (seeded), in reading
    order. The share scales with the slide: 1% of a 100 000-px slide's level 0 is about 400 regions of 512 px."""
    if not regions:
        return []
    rng = random.Random(seed)
    coarsest = regions[-1][0]
    keep = {i for i, (level, _, _) in enumerate(regions) if level == coarsest}
    by_level = {}
    for i, (level, _, _) in enumerate(regions):
        by_level.setdefault(level, []).append(i)
    keep |= {i for members in by_level.values() for i in (members[0], members[-1])}
    if share > 0:
        for members in by_level.values():
            keep |= set(rng.sample(members, min(len(members), math.ceil(share * len(members)))))
    rest = [i for i in range(len(regions)) if i not in keep]
    keep |= set(rng.sample(rest, min(sample, len(rest))))
    return [regions[i] for i in sorted(keep)]


def _read(handles, path, level, location, size):
    """Decode one region with this thread's handle of ``path`` (:class:`~wsi.data.slide_handles.SlideHandles`,
    one slide per thread: the one it read last; Slide reopens itself after a read error); None when it decodes,
    else the one-line reason."""
    try:
        handles.get(path).read_region_image(location, level, size)
    except RegionReadError as err:
        return str(err)  # names the file, the level, the region and the decoder's reason
    return None


def _open_report(path, annotations, labels, need_level):
    """Open the slide and fill in geometry, annotation and label; returns (report, regions) ready to decode."""
    report = SlideReport(path=path)
    report.annotation = annotations.get(path.stem.lower())
    if path.stem.lower() in labels:
        report.label, source = labels[path.stem.lower()]
        report.label_source = str(source)
    elif label_from_name(path.stem):
        report.label, report.label_source = label_from_name(path.stem), "name"
    try:
        size = path.stat().st_size
        if size == 0:
            report.problems.append(f"{path}: empty file (0 bytes)")
            return report
        with open_slide(path) as slide:
            report.level_dimensions = tuple(slide.level_dimensions)
            report.level_downsamples = tuple(slide.level_downsamples)
            report.mpp = slide.mpp
    except SlideError as err:
        report.problems.append(str(err))  # names the file
        return report
    except OSError as err:
        report.problems.append(f"{path}: cannot open: {err.strerror or err}")
        return report
    if report.mpp is None:
        report.warnings.append(f"{path}: no µm per pixel in the slide's properties")
    truncated = truncation(path)
    if truncated:  # it opens with the levels before the cut: say why levels and tiles are missing
        report.problems.append(f"{path}: {truncated} (an interrupted download?)")
    else:  # a missing level of a whole file is a matter of its pyramid's steps
        _check_map_level(report, need_level)
    if report.label == "Tumor" and report.annotation is None:
        report.warnings.append(f"{path}: labelled Tumor ({report.label_source}) but no {path.stem}.xml/.json "
                               "annotation found")
    return report


def _check_map_level(report, need_level):
    """The level the masks and maps read: ``need_level`` must exist; ``"auto"``: the level nearest 64 is taken
    per slide, with a warning when it is more than 2× off. A missing level is a problem of the pyramid's
    structure (its steps), not of the file: the advice says so (``report.structure``)."""
    downsamples = report.level_downsamples
    steps = ", ".join(f"{d:.3g}" for d in downsamples)
    if need_level == "auto":
        level = nearest_level(downsamples)
        if not 0.5 <= downsamples[level] / MAP_DOWNSAMPLE <= 2:
            report.warnings.append(f"{report.path}: no level near {MAP_DOWNSAMPLE} level-0 pixels per cell "
                                   f"(downsamples {steps}); masks and maps use level {level} "
                                   f"({downsamples[level]:.3g})")
    elif need_level is not None and need_level >= len(report.level_dimensions):
        level = nearest_level(downsamples)
        report.structure = True
        report.problems.append(f"{report.path}: no level {need_level} (downsamples {steps}: its pyramid's steps "
                               f"differ, the file is not damaged); level {level} has downsample "
                               f"{downsamples[level]:.3g}: use --level auto (camelyon16.sh: C16_LEVEL=auto, the "
                               "default), which picks each slide's level")


def check_tree(root, *, full=False, sample=64, region=512, need_level=6, workers=None, seed=0, progress=None,
               share=0.0):
    """Check every slide under ``root``; returns ``[SlideReport, ...]`` in path order.

    ``full``: decode every region of every level, else :func:`sample_regions` with ``share`` of each level's
    regions and ``sample`` random ones.
    ``region``: side of a read at its level, pixels. ``need_level``: the level every slide must have (None:
    no such test). ``workers``: decoding threads (default: the CPUs). ``progress``: optional callable called
    with the number of regions decoded after each one.
    """
    root = Path(root)
    annotations, labels = find_annotations(root), read_labels(root)
    reports = [_open_report(path, annotations, labels, need_level) for path in find_slides(root)]
    handles = SlideHandles(capacity=1)
    workers = workers or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for index, report in enumerate(reports):
            if not report.level_dimensions:
                continue
            regions = level_regions(report.level_dimensions, report.level_downsamples, region)
            report.regions_total = len(regions)
            todo = regions if full else sample_regions(regions, sample, seed + index, share=share)
            results = pool.map(lambda r: _read(handles, report.path, *r), todo)
            for failure in results:
                report.regions_tried += 1
                if failure is None:
                    report.regions_read += 1
                else:
                    report.problems.append(failure)
                if progress is not None:
                    progress(1)
    handles.close()
    return reports


def describe(report, root=None):
    """One line about a slide: levels, level-0 size, µm/px, annotation, label, regions decoded."""
    name = report.path.relative_to(root) if root is not None else report.path
    if not report.level_dimensions:
        return f"{name}: not opened"
    width, height = report.level_dimensions[0]
    mpp = f"{report.mpp:.4f} µm/px" if report.mpp else "µm/px unknown"
    annotation = report.annotation.name if report.annotation else "none"
    label = f"{report.label} ({'name' if report.label_source == 'name' else Path(report.label_source).name})" \
        if report.label else "none"
    state = "ok" if report.usable else f"UNUSABLE ({len(report.problems)} problems)"
    return (f"{name}: {len(report.level_dimensions)} levels, {width}x{height} px at level 0, {mpp}, "
            f"annotation {annotation}, label {label}, {report.regions_read} of {report.regions_tried} regions "
            f"tried decoded: {state}")
