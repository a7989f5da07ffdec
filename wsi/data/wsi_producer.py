"""Grids of patches around each tissue position of a slide: the original's ``GridWSIPatchDataset``.

For tissue pixel ``(xm, ym)`` of an ``[x, y]`` mask with stride ``s`` (level-0 pixels per mask pixel), the
``image_size``² level-0 region centred on ``(int((xm + 0.5)·s), int((ym + 0.5)·s))`` is read (past the slide
border it reads black), optionally flipped and rotated, scaled to ``(x − 128) / 128`` and cut into ``side``²
patches of ``patch_size``, each centre-cropped to ``crop_size``. Items are ``(grid [G, 3, C, C] float32, xm, ym)``
with the patches flattened row-major (row = slide y), as the original.

This is the reference ("faithful") path of :mod:`wsi.inference`: simple and slow, since every position reads
the whole region and runs all G crops through the network to keep one.
"""

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from wsi.data.crops import crop_grid, normalize
from wsi.data.slide import open_slide
from wsi.data.slide_handles import SlideHandles
from wsi.data.tissue import load_tissue_mask
from wsi.geometry import GridSpec, mask_geometry
from wsi.orientation import from_names, orient


class GridWSIPatchDataset(Dataset):
    """All grids of a slide's tissue positions (the original's ``GridWSIPatchDataset``).

    Parameters
    ----------
    wsi_path : str or Path
        The slide.
    mask_path : str, Path or ndarray
        The ``[x, y]`` tissue mask (a ``.npy`` path, or the array itself).
    image_size, patch_size, crop_size : int
        768, 256 and 224 as the original's configs.
    normalize : bool
        Scale pixels to ``(x − 128) / 128``.
    flip, rotate : str
        ``'NONE'``/``'FLIP_LEFT_RIGHT'`` and ``'NONE'``/``'ROTATE_90'``/``'ROTATE_180'``/``'ROTATE_270'``, PIL
        transposes applied to the whole region before cutting (flip first).
    geometry : MaskGeometry, optional
        The mask's stride, when already computed (see :func:`wsi.geometry.mask_geometry`).

    Items are ``(grid, xm, ym)``: ``grid`` float32 ``[G, 3, crop_size, crop_size]``, G = (image_size /
    patch_size)², nodes row-major with row = slide y; ``xm, ym`` the position in the mask. Positions come in the
    order of ``np.where(mask)`` (x first). The slide is opened lazily in each DataLoader worker.
    """

    def __init__(self, wsi_path, mask_path, image_size=768, patch_size=256, crop_size=224, normalize=True,
                 flip="NONE", rotate="NONE", geometry=None):
        self._orientation = from_names(flip, rotate)  # (flip, quarter turns)
        self._wsi_path = Path(wsi_path)
        self._grid = GridSpec(image_size, patch_size, crop_size)
        self._normalize = normalize
        self._flip, self._rotate = flip, rotate
        self._handles = SlideHandles(capacity=1)  # one handle per DataLoader worker, opened lazily
        if isinstance(mask_path, np.ndarray):
            self._mask = mask_path
            if geometry is None:
                with open_slide(self._wsi_path) as slide:
                    geometry = mask_geometry(slide.level_dimensions, slide.level_downsamples, self._mask.shape,
                                             mask_name="the mask", slide_name=str(self._wsi_path))
        else:
            with open_slide(self._wsi_path) as slide:
                self._mask, geometry = load_tissue_mask(mask_path, slide)
        self.geometry = geometry
        self._x_idcs, self._y_idcs = np.where(self._mask)

    @property
    def grid_size(self):
        """Patches per grid, G."""
        return self._grid.num_nodes

    def __len__(self):
        return len(self._x_idcs)

    def position(self, idx):
        """The mask position ``(xm, ym)`` of item ``idx``."""
        return int(self._x_idcs[idx]), int(self._y_idcs[idx])

    def region(self, xm, ym):
        """The RGB PIL region of position ``(xm, ym)``, before flip and rotation."""
        x_center, y_center = self.geometry.centre(xm, ym)
        origin = (self._grid.region_origin(x_center), self._grid.region_origin(y_center))
        size = self._grid.image_size
        return self._handles.get(self._wsi_path).read_region_image(origin, 0, (size, size))

    def __getitem__(self, idx):
        xm, ym = int(self._x_idcs[idx]), int(self._y_idcs[idx])
        img = orient(np.asarray(self.region(xm, ym)), *self._orientation)
        img = np.array(img, dtype=np.float32).transpose((2, 0, 1))  # [3, rows = y, cols = x]
        if self._normalize:
            img = normalize(img)
        return crop_grid(img, self._grid), xm, ym

    def close(self):
        self._handles.close()
