"""wsi.geometry's grid sizes: one set of rules (GridSpec, check_grid_sizes) for configs, models and datasets."""

import pytest

from wsi.errors import GeometryError, InputError
from wsi.geometry import GridSpec, check_grid_sizes
from wsi.model import build_model, grid_size


@pytest.mark.parametrize("sizes, message", [
    ((700, 256, 224), "image_size 700 is not a multiple of patch_size 256"),
    ((768, 256, 300), "crop_size 300 is larger than patch_size 256"),
    ((768, 0, 224), "patch_size must be a positive integer, got 0"),
    ((768.0, 256, 224), "image_size must be a positive integer, got 768.0"),
    ((768, True, 224), "patch_size must be a positive integer, got True"),
])
def test_the_rules_refuse_what_makes_no_grid(sizes, message):
    with pytest.raises(GeometryError, match=message):
        check_grid_sizes(*sizes, source="cfg.json")
    with pytest.raises(GeometryError, match=f"^the config: {message}"):
        GridSpec(*sizes)
    with pytest.raises(GeometryError, match=f"^cfg.json: {message}"):
        GridSpec.from_config(dict(zip(("image_size", "patch_size", "crop_size"), sizes)), "cfg.json")


def test_a_models_config_needs_no_crop_size_and_gets_the_same_rules():
    assert GridSpec.nodes_of_config({"image_size": 768, "patch_size": 256}) == 9
    assert GridSpec.nodes_of_config({"image_size": 512, "patch_size": 256, "crop_size": 224}) == 4
    assert grid_size({"image_size": 960, "patch_size": 192}) == 25 == GridSpec(960, 192, 160).num_nodes
    cfg = {"model": "resnet18", "use_crf": True, "image_size": 700, "patch_size": 256}
    with pytest.raises(InputError, match="^m.json: image_size 700 is not a multiple of patch_size 256$"):
        build_model(cfg, source="m.json")
    with pytest.raises(GeometryError, match="^m.json: missing key 'image_size'$"):
        grid_size({"patch_size": 256}, "m.json")


def test_side_nodes_and_kept_cell():
    grid = GridSpec(768, 256, 224)
    assert (grid.side, grid.num_nodes, grid.kept, grid.kept_cell) == (3, 9, 4, (1, 1))
    assert GridSpec(1280, 256, 224).kept_cell == (2, 2)
