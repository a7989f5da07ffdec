"""Training grids: a grid image cut into ``P × P`` crops with one tumour label per cell (the NCRF datasets).

A grid image is the ``image_size``² region (768) centred on a listed level-0 point. It is divided into
``P = image_size // patch_size`` cells per side (3); cell (row, col) has its centre at level-0
``top_left + (int((col + 0.5)·patch_size), int((row + 0.5)·patch_size))`` with ``top_left = centre −
image_size/2``, and its label is 1 when that point lies inside a positive (tumour) polygon of the slide's
annotation (``label_mode="positive"``, the original's rule; ``"positive_not_negative"`` also requires it to be
outside every negative polygon).

Every item is built by :func:`make_grid`, shared by both datasets:

1. colour jitter of the whole image as torchvision ``ColorJitter(64/255, 0.75, 0.25, 0.04)`` (the four
   adjustments in a random order),
2. a left-right flip with probability 0.5, then a rotation by k·90° counter-clockwise, k uniform in {0, 1, 2, 3},
   applied to the image and to the ``[P, P]`` label grid together,
3. float32 channels-first, normalised as ``(x − 128) / 128``,
4. the ``crop_size``² crop of each cell starting at offset ``int((i + 0.5)·patch_size − crop_size/2)`` (16 + 256k
   at the paper's sizes), in row-major order: crop ``i = row·P + col``, row = image row.

Items are ``(grids [G, 3, C, C] float32, labels [G] float32)`` with G = P². With ``raw=True`` the datasets
leave steps 1–4 to :func:`wsi.data.grid_augment.augment_grids`, batched on the training device: items are then
``((image [S, S, 3] uint8, draws [DRAW_FIELDS] float64), labels [G] float32)``, the region as read, the item's
draws packed, and the labels already flipped and rotated (the same labels as the per-item path).

The random draws of item ``idx`` come from a NumPy generator seeded with ``(seed, epoch, idx)``: a seed gives the
same augmentation whatever the number of workers or processes, a resumed run gets the draws an uninterrupted
run would have had, and :class:`GridImageDataset` (PNGs written by patch_gen) and :class:`GridSlideDataset`
(the same regions read from the slides) give identical tensors for the same seed. Call :meth:`set_epoch`
before iterating an epoch (DataLoader workers copy the dataset when an iteration starts).
"""

import os
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from wsi.constants import LABEL_MODES
from wsi.data.annotation import load_annotations
from wsi.data.coords import read_coords
from wsi.data.crops import crop_grid, normalize as scale_pixels
from wsi.data.draws import DRAW_FIELDS, draw_augmentation, pack_draws
from wsi.data.failed_items import FailedItem
from wsi.data.labels import grid_labels
from wsi.data.patches import check_wsi_dir, read_patch
from wsi.data.slide import SlideError, SlideNotFoundError, find_slide, open_slide
from wsi.data.slide_handles import SlideHandles
from wsi.errors import DatasetError
from wsi.geometry import GeometryError, GridSpec
from wsi.orientation import orient


class UnreadableImage(Exception):
    """The image of one grid cannot be read (a damaged tile, a broken PNG): the grid is skipped, not fatal."""

    def __init__(self, where, reason):
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return type(self), (self.where, self.reason)


# Augmentation, normalisation and cropping (one place for both datasets) ------------------------------------------
def color_jitter(image, draws):
    """Apply the draws' colour adjustments to a PIL RGB image, in the drawn order (torchvision's ColorJitter)."""
    if not draws.jitter:
        return image
    adjust = (
        lambda im: TF.adjust_brightness(im, draws.brightness),
        lambda im: TF.adjust_contrast(im, draws.contrast),
        lambda im: TF.adjust_saturation(im, draws.saturation),
        lambda im: TF.adjust_hue(im, draws.hue),
    )
    for i in draws.order:
        image = adjust[i](image)
    return image


def make_grid(image, labels, patch_size, crop_size, draws=None, normalize=True):
    """Augment, normalise and crop one grid image.

    Parameters
    ----------
    image : PIL RGB image or ``[S, S, 3]`` uint8 array (rows = y), S = image_size.
    labels : ``[P, P]`` label grid (row, col), S = P·patch_size; any dtype (tests pass cell numbers).
    draws : :class:`~wsi.data.draws.GridDraws`, or None for no augmentation.
    normalize : apply ``(x − 128) / 128``.

    Returns ``(grids [P², 3, C, C] float32, labels [P²])`` as tensors, crop ``i = row·P + col``.
    """
    labels = np.asarray(labels)
    if draws is not None:
        if draws.jitter:
            image = color_jitter(image if isinstance(image, Image.Image) else Image.fromarray(image), draws)
    array = np.asarray(image)
    size, side = array.shape[0], labels.shape[0]
    if array.shape[:2] != (size, size) or size != side * patch_size:
        raise ValueError(f"grid image of shape {array.shape} does not hold {side}×{side} cells of {patch_size} px")
    # The same flip and counter-clockwise rotation on the image (axes rows, cols) and the label grid keep every
    # crop with its label.
    if draws is not None:
        array, labels = orient(array, draws.flip, draws.rotate), orient(labels, draws.flip, draws.rotate)
    chw = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)
    if normalize:
        chw = scale_pixels(chw)
    crops = crop_grid(chw, GridSpec(size, patch_size, crop_size))
    return torch.from_numpy(crops), torch.from_numpy(np.ascontiguousarray(labels).reshape(-1).copy())


# Datasets --------------------------------------------------------------------------------------------------------
def dataset_from_config(cfg, name, *, seed=None, augment=True, normalize=True, raw=False):
    """The dataset ``name`` (``"tumor_train"``, ``"normal_train"``, ``"tumor_valid"`` or ``"normal_valid"``) of a
    training config: a :class:`GridImageDataset` over the patch folder ``data_path_<name>``, or a
    :class:`GridSlideDataset` when the config gives ``coords_<name>`` (see :mod:`wsi.config`). ``raw=True``: items
    for :func:`wsi.data.grid_augment.augment_grids` (see the module docstring)."""
    from wsi.config import dataset_source, label_mode

    source = dataset_source(cfg, name)
    sizes = (cfg["image_size"], cfg["patch_size"], cfg["crop_size"], normalize)
    options = dict(label_mode=label_mode(cfg), augment=augment, seed=seed, raw=raw)
    if source["kind"] == "slides":
        return GridSlideDataset(source["wsi_path"], source["coords_path"], source["json_path"], *sizes, **options)
    return GridImageDataset(source["data_path"], source["json_path"], *sizes, **options)


def _annotation_files(json_path, rows, source):
    """``{pid: Annotation}`` for the pids of ``rows`` (:func:`wsi.data.annotation.load_annotations`); every listed
    slide needs its ``<pid>.json``, as in the original, and a missing one is named with its first line."""
    json_path = Path(json_path)
    if not json_path.is_dir():
        raise DatasetError(f"{json_path}: no such annotation folder")
    first_line = {}
    for number, (pid, _, _) in enumerate(rows, start=1):
        first_line.setdefault(pid, number)
    for pid, number in first_line.items():
        if not (json_path / f"{pid}.json").is_file():
            raise DatasetError(f"{source}: line {number}: slide {pid!r} has no annotation {json_path / pid}.json")
    return load_annotations(json_path, list(first_line))


class _GridDataset(torch.utils.data.Dataset):
    """Shared part of the two datasets: coordinates, labels, random draws and :func:`make_grid`."""

    def __init__(self, rows, json_path, img_size, patch_size, crop_size, normalize, label_mode, augment, seed,
                 source, raw=False):
        try:
            self.grid = GridSpec(img_size, patch_size, crop_size)
        except GeometryError as err:
            raise DatasetError(f"{source}: {str(err).removeprefix('the config: ')}") from None
        if label_mode not in LABEL_MODES:
            raise DatasetError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
        self._coords = rows
        self._img_size, self._patch_size, self._crop_size = img_size, patch_size, crop_size
        self._normalize, self._label_mode, self._augment = normalize, label_mode, augment
        self.raw = bool(raw)
        self._annotations = _annotation_files(json_path, rows, source)
        # Without a seed, draw one: items differ from run to run but stay distinct across workers and epochs.
        self.seed = int(np.random.SeedSequence().entropy) if seed is None else int(seed)
        self.epoch = 0

    # Public geometry (read these, not the private fields).
    @property
    def grid_size(self):
        """Cells per grid, G."""
        return self.grid.num_nodes

    @property
    def patch_per_side(self):
        return self.grid.side

    @property
    def coords(self):
        """The ``(pid, x, y)`` rows, in file order."""
        return self._coords

    def set_epoch(self, epoch):
        """Choose the epoch whose random draws the items use."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self._coords)

    def draws(self, idx):
        """The :class:`~wsi.data.draws.GridDraws` of item ``idx`` at the current epoch (None without augmentation)."""
        if not self._augment:
            return None
        return draw_augmentation(np.random.default_rng([self.seed, self.epoch, int(idx)]))

    def labels(self, idx):
        """Label grid ``[P, P]`` float32 (row = y, col = x) of item ``idx``, before augmentation."""
        pid, x, y = self._coords[idx]
        labels = grid_labels(self._annotations[pid], [(x, y)], self._patch_size, self.patch_per_side,
                             exclude_negative=self._label_mode == "positive_not_negative")
        return labels[0].astype(np.float32)

    def read_image(self, idx):
        """The grid image of item ``idx``, a PIL RGB image of ``img_size``² pixels."""
        raise NotImplementedError

    def __getitem__(self, idx):
        if not 0 <= idx < len(self._coords):
            raise IndexError(idx)
        try:
            if self.raw:
                return self.raw_item(idx)
            image = self.read_image(idx)
        except UnreadableImage as err:
            # Not raised: a worker's exception reaches the main process wrapped in a traceback. The loader
            # (wsi.data.skipping) leaves the grid out, logs it once and counts it.
            return FailedItem(idx, err, self.item_shapes())
        return make_grid(image, self.labels(idx), self._patch_size, self._crop_size,
                         draws=self.draws(idx), normalize=self._normalize)


    def item_shapes(self):
        """Shapes of an item's tensors (for a batch whose every grid failed): ``((G, 3, C, C), (G,))``, or with
        ``raw`` ``(((S, S, 3), (DRAW_FIELDS,)), (G,))``."""
        nodes, crop = self.grid.num_nodes, self._crop_size
        if self.raw:
            return ((self._img_size, self._img_size, 3), (DRAW_FIELDS,)), (nodes,)
        return (nodes, 3, crop, crop), (nodes,)

    def raw_item(self, idx):
        """``((image [S, S, 3] uint8, draws [DRAW_FIELDS] float64), labels [G] float32)``: the region as read
        (decoded once), the packed draws and the labels flipped and rotated with them."""
        draws = self.draws(idx)
        image = np.array(self.read_image(idx), dtype=np.uint8)  # one copy out of PIL, writable for torch
        size = self._img_size
        if image.shape != (size, size, 3):
            raise ValueError(f"grid image of shape {image.shape}, expected ({size}, {size}, 3)")
        labels = self.labels(idx)
        if draws is not None:
            labels = orient(labels, draws.flip, draws.rotate)
        labels = np.ascontiguousarray(labels).reshape(-1)
        return (torch.from_numpy(image), pack_draws(draws)), torch.from_numpy(labels)


class GridImageDataset(_GridDataset):
    """Grids from a patch folder written by patch_gen: ``list.txt`` and ``<i>.png`` for line i.

    Parameters
    ----------
    data_path : patch folder.
    json_path : folder of annotation JSONs ``<pid>.json`` of the listed slides.
    img_size, patch_size, crop_size : grid image side, cell side and crop side in pixels (768, 256, 224).
    normalize : ``(x − 128) / 128``.
    label_mode : ``"positive"`` (the original) or ``"positive_not_negative"``.
    augment : colour jitter, flip and rotation (the original always augments, validation included).
    seed : seed of the random draws (see the module docstring); None draws one.
    raw : items are the region as read and its draws, augmented later on the device (module docstring).

    Raises :class:`DatasetError` naming the folder for a missing ``list.txt``, PNG or annotation, and for PNGs
    whose size is not ``img_size``.
    """

    def __init__(self, data_path, json_path, img_size, patch_size, crop_size=224, normalize=True, *,
                 label_mode="positive", augment=True, seed=None, raw=False):
        self._data_path = Path(data_path)
        list_path = self._data_path / "list.txt"
        if not self._data_path.is_dir():
            raise DatasetError(f"{self._data_path}: no such patch folder")
        if not list_path.is_file():
            raise DatasetError(f"{self._data_path}: no list.txt; write the folder with patch_gen")
        rows = read_coords(list_path)
        if not rows:
            raise DatasetError(f"{list_path}: no coordinates (the list is empty): nothing to train on")
        names = set(os.listdir(self._data_path))
        missing = [i for i in range(len(rows)) if f"{i}.png" not in names]
        if missing:
            raise DatasetError(f"{self._data_path}: {len(missing)} of {len(rows)} PNGs missing (first {missing[0]}.png)"
                               f"; run patch_gen again or drop the lines listed in failed.txt")
        if rows:
            with Image.open(self._data_path / "0.png") as first:
                if first.size != (img_size, img_size):
                    raise DatasetError(f"{self._data_path / '0.png'}: is {first.size[0]}×{first.size[1]} px, "
                                       f"expected image_size {img_size}×{img_size}")
        super().__init__(rows, json_path, img_size, patch_size, crop_size, normalize, label_mode, augment, seed,
                         list_path, raw)

    def read_image(self, idx):
        path = self._data_path / f"{idx}.png"
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:  # PIL: truncated or broken PNG
            raise UnreadableImage(str(path), str(err).strip() or type(err).__name__) from None
        if image.size != (self._img_size, self._img_size):
            raise UnreadableImage(str(path), f"is {image.size[0]}×{image.size[1]} px, expected {self._img_size}")
        return image


class GridSlideDataset(_GridDataset):
    """Grids read on the fly from the slides at the centres of a coordinate list (no PNG folder needed).

    Item ``i`` is the ``img_size``² level-0 region of ``<wsi_path>/<pid>.tif`` centred on line ``i``, read as
    patch_gen reads it, so it equals ``GridImageDataset`` over patch_gen's output pixel for pixel. Each worker
    process opens a slide once, on first use, and keeps it open.

    Parameters as :class:`GridImageDataset`, with ``wsi_path`` (slide folder) and ``coords_path`` (coordinate
    list) in place of ``data_path``.
    """

    def __init__(self, wsi_path, coords_path, json_path, img_size, patch_size, crop_size=224, normalize=True, *,
                 label_mode="positive", augment=True, seed=None, raw=False):
        wsi_path = check_wsi_dir(wsi_path)
        rows = read_coords(coords_path)
        if not rows:
            raise DatasetError(f"{coords_path}: no coordinates (the list is empty): nothing to train on")
        self._slide_paths = {}
        for number, (pid, _, _) in enumerate(rows, start=1):
            if pid not in self._slide_paths:
                try:
                    self._slide_paths[pid] = find_slide(wsi_path, pid)
                except SlideNotFoundError as err:
                    raise DatasetError(f"{coords_path}: line {number}: {err}") from None
        for path in self._slide_paths.values():  # a slide that does not open at all fails here, in one line
            open_slide(path).close()
        self._handles = SlideHandles()  # per worker process: opened on first use, kept open
        super().__init__(rows, json_path, img_size, patch_size, crop_size, normalize, label_mode, augment, seed,
                         coords_path, raw)

    def _slide(self, pid):
        return self._handles.get(self._slide_paths[pid])

    def read_image(self, idx):
        pid, x, y = self._coords[idx]
        try:
            return read_patch(self._slide(pid), x, y, self._img_size, level=0)
        except SlideError as err:
            raise UnreadableImage(f"{self._slide_paths[pid]} centre ({x}, {y})",
                                  getattr(err, "reason", None) or str(err)) from None

    def close(self):
        """Close the slides this process opened."""
        self._handles.close()


__all__ = ["DatasetError", "GridImageDataset", "GridSlideDataset", "LABEL_MODES", "color_jitter", "dataset_from_config",
           "make_grid"]
