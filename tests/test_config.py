"""Training configs: the original's files load unchanged, and every mistake is one line naming the file and key."""

import json

import pytest

from tests.helpers import ROOT
from wsi.config import ConfigError, dataset_source, label_mode, load_config, save_config
from wsi.geometry import GridSpec

ORIGINAL = json.loads((ROOT / "configs" / "resnet18_crf.json").read_text())


def write(tmp_path, cfg, name="cfg.json"):
    path = tmp_path / name
    path.write_text(json.dumps(cfg, indent=1))
    return path


def paths_config(tmp_path):
    """The original's config with data folders that exist (patch folders with a list.txt, annotation folders)."""
    cfg = dict(ORIGINAL)
    for key in [k for k in cfg if k.startswith("data_path_")]:
        folder = tmp_path / key
        folder.mkdir()
        (folder / "list.txt").write_text("Tumor_001,100,100\n")
        cfg[key] = str(folder)
    for key in ("json_path_train", "json_path_valid"):
        (tmp_path / key).mkdir()
        cfg[key] = str(tmp_path / key)
    return cfg


def test_shipped_configs_have_the_original_bytes_and_load():
    for name, use_crf in (("resnet18_base", False), ("resnet18_crf", True)):
        path = ROOT / "configs" / f"{name}.json"
        cfg = load_config(path)
        assert cfg["use_crf"] is use_crf
        assert list(cfg) == ["model", "use_crf", "batch_size", "image_size", "patch_size", "crop_size", "lr",
                             "momentum", "data_path_tumor_train", "data_path_normal_train", "data_path_tumor_valid",
                             "data_path_normal_valid", "json_path_train", "json_path_valid", "epoch", "log_every"]
        grid = GridSpec.from_config(cfg)
        assert (grid.num_nodes, grid.side, label_mode(cfg)) == (9, 3, "positive")
        assert path.read_text() == json.dumps(cfg, indent=1) + "\n"
    assert (ROOT / "configs" / "resnet18_base.json").stat().st_size == 475
    assert (ROOT / "configs" / "resnet18_crf.json").stat().st_size == 474


@pytest.mark.parametrize("change, message", [
    ({"lr": None}, "missing key 'lr'"),
    ({"momentun": 0.9}, "unknown key 'momentun' (did you mean 'momentum'?)"),
    ({"batch_size": "10"}, "key 'batch_size' must be an integer, got \"10\""),
    ({"batch_size": 10.0}, "key 'batch_size' must be an integer"),
    ({"use_crf": 1}, "key 'use_crf' must be true or false, got 1"),
    ({"epoch": True}, "key 'epoch' must be an integer, got true"),
    ({"lr": "fast"}, "key 'lr' must be a number"),
    ({"model": "resnet19"}, "key 'model' is 'resnet19', expected one of"),
    ({"image_size": 700}, "image_size 700 is not a multiple of patch_size 256"),
    ({"crop_size": 300}, "crop_size 300 is larger than patch_size 256"),
    ({"batch_size": 0}, "key 'batch_size' must be at least 1, got 0"),
    ({"lr": -1}, "key 'lr' must be positive"),
    ({"label_mode": "negative"}, "key 'label_mode' is 'negative', expected one of"),
    ({"coords_tumor_train": "t.txt", "wsi_path_train": "slides"}, "give either 'data_path_tumor_train'"),
    ({"coords_tumor_train": "t.txt", "data_path_tumor_train": None}, "missing key 'wsi_path_train'"),
])
def test_config_errors_name_the_file_and_key(tmp_path, change, message):
    cfg = dict(ORIGINAL)
    for key, value in change.items():
        if value is None:
            cfg.pop(key)
        else:
            cfg[key] = value
    path = write(tmp_path, cfg)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_unreadable_config_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "resnet18",')
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        load_config(bad)
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_config(write(tmp_path, [1, 2]))


def test_data_paths_are_checked_for_training(tmp_path):
    # Inference reads only the model keys: the shipped placeholders (/PATCHES_TUMOR_TRAIN/) pass by default.
    assert load_config(ROOT / "configs" / "resnet18_base.json")["model"] == "resnet18"
    with pytest.raises(ConfigError, match="data_path_tumor_train '/PATCHES_TUMOR_TRAIN/' does not exist"):
        load_config(ROOT / "configs" / "resnet18_base.json", check_paths=True)

    cfg = paths_config(tmp_path)
    assert load_config(write(tmp_path, cfg), check_paths=True) == cfg
    (tmp_path / "data_path_normal_valid" / "list.txt").unlink()
    with pytest.raises(ConfigError, match="data_path_normal_valid .* has no list.txt; write it with patch_gen"):
        load_config(write(tmp_path, cfg), check_paths=True)
    cfg["json_path_valid"] = str(tmp_path / "nowhere")
    cfg["data_path_normal_valid"] = cfg["data_path_normal_train"]
    with pytest.raises(ConfigError, match="json_path_valid .*nowhere' does not exist"):
        load_config(write(tmp_path, cfg), check_paths=True)


def test_on_the_fly_keys(tmp_path):
    cfg = paths_config(tmp_path)
    del cfg["data_path_tumor_valid"]
    cfg.update(coords_tumor_valid=str(tmp_path / "tumor_valid.txt"), wsi_path_valid=str(tmp_path / "slides"),
               label_mode="positive_not_negative")
    path = write(tmp_path, cfg)
    with pytest.raises(ConfigError, match="coords_tumor_valid .* does not exist, expected a coordinate list file"):
        load_config(path, check_paths=True)
    (tmp_path / "tumor_valid.txt").write_text("Tumor_001,100,100\n")
    with pytest.raises(ConfigError, match="wsi_path_valid .*slides' does not exist"):
        load_config(path, check_paths=True)
    (tmp_path / "slides").mkdir()
    cfg = load_config(path, check_paths=True)
    assert label_mode(cfg) == "positive_not_negative"
    assert dataset_source(cfg, "tumor_valid") == {"kind": "slides", "coords_path": str(tmp_path / "tumor_valid.txt"),
                                                  "wsi_path": str(tmp_path / "slides"),
                                                  "json_path": cfg["json_path_valid"]}
    assert dataset_source(cfg, "tumor_train")["kind"] == "patches"


def test_save_config_writes_indent_1_without_newline(tmp_path):
    save_config(ORIGINAL, tmp_path / "cfg.json")
    assert (tmp_path / "cfg.json").read_text() == json.dumps(ORIGINAL, indent=1)
