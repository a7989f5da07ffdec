"""The fault matrix, continued (issue 19): nothing runs from a file, nothing is lost, nothing is kept unchecked.

Classes: a checkpoint that runs code when unpickled; an output that names an input (same path, a symbolic link,
a hard link, a folder mode writing into the input folder); a training folder that holds a run; sidecars that
name another slide, contradict their own shape or name another kind of array; resumed runs that meet junk,
stale temporaries, outputs made with other settings or maps with failed positions; numbers and sizes out of
range; and the minor cases of the issue. Each case asserts the exit status, one ``error:`` line without a
traceback where the run is refused, and that every input is left as it was (bytes compared).

Reuses the synthetic world of the fault matrix (``world`` in tests/conftest.py: a 512² tumour slide, a damaged
copy, a tiny CRF model).
"""

import argparse
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch

from tests.helpers import (HOST, MASK_LEVEL, TORCH_PASS, assert_one_error, call, dead_pid, temporaries,
                           write_train_config)
from wsi.arrays import save_array
from wsi.bin import (Evaluation_FROC, annotation_mask, camelyon16xml2json, check_slides, coords_report, export,
                     hard_negatives, nms, patch_gen, plot_W, probs_map, sample_coords, slide_auc, tissue_mask, train)
from wsi.data.coords import write_coords
from wsi.errors import OutputError


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


def digests(*paths):
    """``{path: sha256}`` of every file under ``paths`` (files or folders): inputs compared before and after."""
    found = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            found[file] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


# 1. A checkpoint that runs code --------------------------------------------------------------------------------
class RunsCode:
    """Unpickling it runs ``touch <marker>``: what a malicious checkpoint from a mirror would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_checkpoint(world, folder, name="evil.ckpt"):
    """A real checkpoint of the world's model plus an object that runs code; returns (path, marker)."""
    marker = folder / "code-ran"
    ckpt = torch.load(world / "model.ckpt", map_location="cpu", weights_only=True)
    ckpt["extra"] = RunsCode(marker)
    torch.save(ckpt, folder / name)
    return folder / name, marker


@pytest.mark.parametrize("script", ["plot_W", "probs_map", "train"])
def test_a_checkpoint_that_runs_code_is_refused_in_one_line(world, tmp_path, capsys, script):
    if script == "train":  # --resume reads SAVE_PATH/train.ckpt
        (tmp_path / "out").mkdir()
        ckpt, marker = evil_checkpoint(world, tmp_path / "out", "train.ckpt")
        argv = [write_train_config(world, tmp_path), tmp_path / "out", "--num_workers", "0", "--resume"]
        main = train.main
    else:
        ckpt, marker = evil_checkpoint(world, tmp_path)
        main, argv = {
            "plot_W": (plot_W.main, [ckpt, "--out", tmp_path / "w.png"]),
            "probs_map": (probs_map.main, [world / "slides" / "Tumor_001.tif", ckpt, world / "cfg.json",
                                           world / "mask.npy", tmp_path / "p.npy", "--num_workers", "0"]),
        }[script]
    before = digests(ckpt)
    status, err = call(main, argv, capsys)
    assert status == 2
    assert_one_error(err, str(ckpt), "posix.system", "--trust_checkpoint")
    assert not marker.exists()  # nothing ran
    assert digests(ckpt) == before
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("p.*"))


def test_trust_checkpoint_loads_a_file_the_user_vouches_for(world, tmp_path, capsys):
    ckpt = torch.load(world / "model.ckpt", map_location="cpu", weights_only=True)
    ckpt["args"] = argparse.Namespace(lr=0.1)  # what another tool may store: needs full unpickling
    torch.save(ckpt, tmp_path / "other.ckpt")
    status, err = call(plot_W.main, [tmp_path / "other.ckpt", "--out", tmp_path / "w.png"], capsys)
    assert status == 2
    assert_one_error(err, "argparse.Namespace", "--trust_checkpoint")
    status, err = call(plot_W.main, [tmp_path / "other.ckpt", "--out", tmp_path / "w.png", "--trust_checkpoint"],
                       capsys)
    assert status == 0, err
    assert (tmp_path / "w.png").stat().st_size > 0


# 2. An output that names an input --------------------------------------------------------------------------------
def same_file_cases(world, tmp):
    """``{case: (main, argv, inputs that must stay as they were)}``; ``tmp`` holds copies the cases may name."""
    w = world
    for name in ("Tumor_001.xml", "labels.csv", "p.npy", "coords.txt", "Tumor_001.csv", "model.ckpt", "mask.npy",
                 "cfg.json"):
        source = {"Tumor_001.xml": w / "xml" / name, "p.npy": w / "maps" / "Tumor_001.npy",
                  "Tumor_001.csv": w / "csv" / name}.get(name, w / name)
        shutil.copy(source, tmp / name)
    shutil.copytree(w / "maps", tmp / "maps")
    shutil.copytree(w / "csv", tmp / "csv")
    shutil.copy(w / "model.ckpt", tmp / "model.png")  # a checkpoint under a figure's name
    (tmp / "p.json").write_text('{"an annotation": "not a sidecar"}')
    (tmp / "link.npy").symlink_to(tmp / "p.npy")
    os.link(tmp / "mask.npy", tmp / "hard.npy")
    slide = w / "slides" / "Tumor_001.tif"
    return {
        "xml2json_same": (camelyon16xml2json.main, [tmp / "Tumor_001.xml", tmp / "Tumor_001.xml"],
                          [tmp / "Tumor_001.xml"]),
        "nms_same": (nms.main, [tmp / "p.npy", tmp / "p.npy", "--level", "4"], [tmp / "p.npy"]),
        "nms_symlink": (nms.main, [tmp / "p.npy", tmp / "link.npy", "--level", "4"], [tmp / "p.npy"]),
        "nms_into_map_folder": (nms.main, [tmp / "maps", tmp / "maps" / "Tumor_001.npy", "--level", "4"],
                                [tmp / "maps"]),
        "probs_map_mask_twice": (probs_map.main, [slide, tmp / "model.ckpt", tmp / "cfg.json", tmp / "mask.npy",
                                                  tmp / "mask.npy", "--num_workers", "0"], [tmp / "mask.npy"]),
        "probs_map_hard_link": (probs_map.main, [slide, tmp / "model.ckpt", tmp / "cfg.json", tmp / "mask.npy",
                                                 tmp / "hard.npy", "--num_workers", "0"], [tmp / "mask.npy"]),
        "probs_map_sidecar_is_cfg": (probs_map.main, [slide, tmp / "model.ckpt", tmp / "cfg.json",
                                                      tmp / "mask.npy", tmp / "cfg.npy", "--num_workers", "0"],
                                     [tmp / "cfg.json"]),
        "slide_auc_labels_twice": (slide_auc.main, [tmp / "maps", tmp / "labels.csv", tmp / "labels.csv"],
                                   [tmp / "labels.csv"]),
        "export_heatmap_map": (export.main, ["heatmap", tmp / "p.npy", tmp / "p.npy", "--level", "4"],
                               [tmp / "p.npy"]),
        "export_geojson_csv": (export.main, ["geojson", tmp / "Tumor_001.csv", "--csv", tmp / "Tumor_001.csv"],
                               [tmp / "Tumor_001.csv"]),
        "hard_negatives_map": (hard_negatives.main, [tmp / "maps", w / "jsons", tmp / "coords.txt", "--output",
                                                     tmp / "maps" / "Tumor_001.npy", "--level", "4"],
                               [tmp / "maps", tmp / "coords.txt"]),
        "coords_report_list": (coords_report.main, [w / "jsons", "--tumor", tmp / "coords.txt", "--output",
                                                    tmp / "coords.txt"], [tmp / "coords.txt"]),
        "froc_json_over_csv": (Evaluation_FROC.main, [w / "gt", tmp / "csv", "--json", tmp / "csv" / "Tumor_001.csv"],
                               [tmp / "csv"]),
        "plot_W_ckpt": (plot_W.main, [tmp / "model.png", "--out", tmp / "model.png"], [tmp / "model.png"]),
        "tissue_mask_annotation_json": (tissue_mask.main, [slide, tmp / "p.npy", "--level", "3"],
                                        [tmp / "p.json", tmp / "p.npy"]),
    }


SAME_FILE_CASES = [
    "xml2json_same", "nms_same", "nms_symlink", "nms_into_map_folder", "probs_map_mask_twice", "probs_map_hard_link",
    "probs_map_sidecar_is_cfg", "slide_auc_labels_twice", "export_heatmap_map", "export_geojson_csv",
    "hard_negatives_map", "coords_report_list", "froc_json_over_csv", "plot_W_ckpt", "tissue_mask_annotation_json"]


@pytest.mark.parametrize("case", SAME_FILE_CASES)
def test_an_output_that_names_an_input_is_refused_and_the_input_kept(world, tmp_path, capsys, case):
    main, argv, inputs = same_file_cases(world, tmp_path)[case]
    if case == "nms_into_map_folder":  # the folder mode's outputs are <stem>.csv: give them the maps' names
        argv = [tmp_path / "maps", tmp_path / "maps", "--level", "4"]
        (tmp_path / "maps" / "Tumor_001.csv").symlink_to(tmp_path / "maps" / "Tumor_001.npy")
    before = digests(*inputs)
    status, err = call(main, argv, capsys)
    assert status == 2, err
    line = assert_one_error(err)
    assert "an output never replaces an input" in line or "not a sidecar of this pipeline" in line, line
    assert digests(*inputs) == before
    assert not temporaries(tmp_path)


def test_annotation_mask_folder_mode_never_writes_over_the_slides(world, tmp_path, capsys):
    slides = tmp_path / "slides"
    shutil.copytree(world / "slides", slides)
    before = digests(slides)
    status, err = call(annotation_mask.main, [world / "jsons", slides, "--wsi", slides], capsys)
    assert status == 2
    assert_one_error(err, "Tumor_001.tif", "an output never replaces an input")
    assert digests(slides) == before


def test_tissue_mask_folder_mode_never_replaces_an_annotation_beside_the_slide(world, tmp_path, capsys):
    slides = tmp_path / "slides"
    slides.mkdir()
    shutil.copy(world / "slides" / "Tumor_001.tif", slides)
    shutil.copy(world / "jsons" / "Tumor_001.json", slides)  # the annotation kept beside its slide
    before = digests(slides)
    status, err = call(tissue_mask.main, [slides, slides, "--level", "3"], capsys)
    assert status == 2
    assert_one_error(err, "Tumor_001.json", "not a sidecar of this pipeline")
    assert digests(slides) == before


def test_probs_map_folder_mode_refuses_the_mask_folder_as_output(world, tmp_path, capsys):
    wsi, masks = tmp_path / "wsi", tmp_path / "masks"
    wsi.mkdir()
    masks.mkdir()
    shutil.copy(world / "slides" / "Tumor_001.tif", wsi / "S0.tif")
    shutil.copy(world / "mask.npy", masks / "S0.npy")
    before = digests(masks)
    status, err = call(probs_map.main, [wsi, world / "model.ckpt", world / "cfg.json", masks, masks,
                                        "--num_workers", "0"], capsys)
    assert status == 2
    assert_one_error(err, "S0.npy", "an output never replaces an input")
    assert digests(masks) == before


def test_train_refuses_to_rewrite_its_config_given_as_save_path_cfg(world, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    cfg = write_train_config(world, out)  # out/cfg.json: CFG is the file train.py writes
    before = digests(cfg)
    status, err = call(train.main, [cfg, out, "--num_workers", "0", "--epochs", "3"], capsys)
    assert status == 2
    assert_one_error(err, "cfg.json", "an output never replaces an input")
    assert digests(cfg) == before


# 3. A finished run is not replaced unasked --------------------------------------------------------------------------
def test_train_refuses_a_folder_holding_a_run_unless_resume_or_overwrite(world, tmp_path, capsys):
    cfg, out = write_train_config(world, tmp_path), tmp_path / "out"
    assert call(train.main, [cfg, out, "--num_workers", "0"], capsys)[0] == 0
    before = digests(out / "train.ckpt", out / "best.ckpt")
    status, err = call(train.main, [cfg, out, "--num_workers", "0"], capsys)
    assert status == 2
    assert_one_error(err, "train.ckpt", "--resume", "--overwrite")
    assert digests(out / "train.ckpt", out / "best.ckpt") == before
    status, err = call(train.main, [cfg, out, "--num_workers", "0", "--resume", "--overwrite"], capsys)
    assert status == 2
    assert_one_error(err, "--resume", "--overwrite")
    # --resume: a run killed with kill -9 left a temporary checkpoint; it is removed, a live run's is kept.
    stale, live = out / f".best.ab.{HOST}-{dead_pid()}.tmp.ckpt", out / f".train.cd.{HOST}-{os.getpid()}.tmp.ckpt"
    stale.write_bytes(b"31 MB once")
    live.write_bytes(b"being written")
    status, err = call(train.main, [cfg, out, "--num_workers", "0", "--resume"], capsys)
    assert status == 0, err
    assert not stale.exists() and live.exists()
    live.unlink()
    status, err = call(train.main, [cfg, out, "--num_workers", "0", "--overwrite"], capsys)
    assert status == 0, err
    assert torch.load(out / "train.ckpt", weights_only=True)["epoch"] == 1


# 4. Sidecars checked by every consumer ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_sidecars(world, tmp_path_factory):
    """Level-3 tissue masks of the slide and of a second slide (another seed), and a map with its sidecar."""
    from wsi.synthetic import make_synthetic_slide

    root = tmp_path_factory.mktemp("sidecars")
    other = make_synthetic_slide(root / "other" / "Other_001.tif", width=512, height=512, seed=11, num_tumours=1,
                                 tumour_size=(150, 250), tile_size=64).slide_path
    for slide, name in ((world / "slides" / "Tumor_001.tif", "Tumor_001"), (other, "Other_001")):
        assert tissue_mask.main([str(slide), str(root / "masks" / f"{name}.npy"), "--level", str(MASK_LEVEL)]) == 0
    status = probs_map.main([str(world / "slides" / "Tumor_001.tif"), str(world / "model.ckpt"),
                             str(world / "cfg.json"), str(root / "masks" / "Tumor_001.npy"),
                             str(root / "maps" / "Tumor_001.npy"), "--num_workers", "0", *TORCH_PASS])
    assert status == 0
    return root, other


def edit_sidecar(path, **changes):
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


def test_hard_negatives_refuses_another_slides_mask_and_map(world, with_sidecars, tmp_path, capsys):
    root, _ = with_sidecars
    masks, maps = tmp_path / "masks", tmp_path / "maps"
    masks.mkdir()
    shutil.copytree(root / "maps", maps)
    for suffix in (".npy", ".json"):  # another slide's mask, filed under Tumor_001
        shutil.copy(root / "masks" / f"Other_001{suffix}", masks / f"Tumor_001{suffix}")
    argv = [maps, world / "jsons", tmp_path / "normal.txt", "--mask_path", masks]
    status, err = call(hard_negatives.main, argv, capsys)
    assert status == 2
    assert_one_error(err, "made from slide Other_001.tif")
    edit_sidecar(maps / "Tumor_001.json", slide={**json.loads((maps / "Tumor_001.json").read_text())["slide"],
                                                 "name": "Tumor_002.tif"})
    status, err = call(hard_negatives.main, argv[:3], capsys)
    assert status == 2
    assert_one_error(err, "made from slide Tumor_002.tif, not Tumor_001")
    assert not (tmp_path / "normal.txt").exists()


@pytest.mark.parametrize("script", ["nms", "export", "hard_negatives", "slide_auc"])
def test_a_sidecar_that_contradicts_its_shape_is_refused(world, with_sidecars, tmp_path, capsys, script):
    root, _ = with_sidecars
    maps = tmp_path / "maps"
    shutil.copytree(root / "maps", maps)
    edit_sidecar(maps / "Tumor_001.json", level=2, stride=4.0, downsample=[4.0, 4.0])  # the shape is level 4's
    main, argv = {
        "nms": (nms.main, [maps / "Tumor_001.npy", tmp_path / "d.csv"]),
        "export": (export.main, ["heatmap", maps / "Tumor_001.npy", tmp_path / "h.png"]),
        "hard_negatives": (hard_negatives.main, [maps, world / "jsons", tmp_path / "n.txt"]),
        "slide_auc": (slide_auc.main, [maps, world / "labels.csv", tmp_path / "s.csv"]),
    }[script]
    status, err = call(main, argv, capsys)
    assert status == 2
    assert_one_error(err, "inconsistent sidecar", "does not cover slide Tumor_001.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]


def test_export_refuses_to_draw_a_map_over_another_slide(world, with_sidecars, tmp_path, capsys):
    root, other = with_sidecars
    status, err = call(export.main, ["heatmap", root / "maps" / "Tumor_001.npy", tmp_path / "h.png", "--wsi",
                                     other], capsys)
    assert status == 2
    assert_one_error(err, "made from slide Tumor_001.tif", "Other_001.tif")
    assert not (tmp_path / "h.png").exists()


@pytest.mark.parametrize("array", ["tissue_mask", "bool", "above_one"])
def test_nms_refuses_what_is_not_a_probability_map(world, with_sidecars, tmp_path, capsys, array):
    root, _ = with_sidecars
    if array == "tissue_mask":
        source, expected = root / "masks" / "Tumor_001.npy", "a tissue mask (says Tumor_001.json)"
    else:
        source = tmp_path / "m.npy"
        np.save(source, np.ones((4, 4), dtype=bool) if array == "bool" else np.full((4, 4), 1.5))
        expected = "a boolean array" if array == "bool" else "expected probabilities in [0, 1]"
    status, err = call(nms.main, [source, tmp_path / "d.csv"], capsys)
    assert status == 2
    assert_one_error(err, expected)
    assert not (tmp_path / "d.csv").exists()


def test_froc_refuses_a_probability_above_one(world, tmp_path, capsys):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "Tumor_001.csv").write_text("0.9,200,200\n1.7,100,100\n")
    status, err = call(Evaluation_FROC.main, [world / "gt", tmp_path / "csv"], capsys)
    assert status == 2
    assert_one_error(err, "Tumor_001.csv: line 2 has a probability outside [0, 1]")


# 5. Resume verifies and cleans ---------------------------------------------------------------------------------------
def test_tissue_mask_folder_resume_redoes_junk_and_other_settings_and_cleans(world, tmp_path, capsys):
    wsi, out = tmp_path / "wsi", tmp_path / "out"
    wsi.mkdir()
    for stem in "ABCDE":
        shutil.copy(world / "slides" / "Tumor_001.tif", wsi / f"{stem}.tif")
    argv = [wsi, out, "--level", "3"]
    assert call(tissue_mask.main, argv, capsys)[0] == 0
    good = np.load(out / "A.npy")
    (out / "A.npy").write_bytes(b"")  # 0 bytes
    (out / "B.npy").write_text("text, not an array")
    np.save(out / "C.npy", np.ones((3, 3), dtype=bool))  # wrong shape (its sidecar says otherwise)
    edit_sidecar(out / "D.json", rgb_min=200)  # made with other settings
    kept = digests(out / "E.npy", out / "E.json")
    stale, live = out / f".A.x1.{HOST}-{dead_pid()}.tmp.json", out / f".B.x2.{HOST}-{os.getpid()}.tmp.json"
    stale.write_text("left by kill -9")
    live.write_text("a concurrent run's")
    status, err = call(tissue_mask.main, argv, capsys)
    assert status == 0, err
    for stem in "ABCD":
        assert np.array_equal(np.load(out / f"{stem}.npy"), good)
        assert json.loads((out / f"{stem}.json").read_text())["rgb_min"] == 50
    assert digests(out / "E.npy", out / "E.json") == kept  # a good mask is kept as it is
    assert not stale.exists() and live.exists()
    # Another --level: every mask is made again at that level.
    status, err = call(tissue_mask.main, [wsi, out, "--level", "4"], capsys)
    assert status == 0, err
    assert all(json.loads((out / f"{stem}.json").read_text())["level"] == 4 for stem in "ABCDE")


def test_probs_map_resume_redoes_maps_of_another_checkpoint_and_lists_bad_masks(world, tmp_path, capsys):
    wsi, masks, out = tmp_path / "wsi", tmp_path / "masks", tmp_path / "out"
    for folder in (wsi, masks):
        folder.mkdir()
    for stem in ("S0", "S1", "S2"):
        shutil.copy(world / "slides" / "Tumor_001.tif", wsi / f"{stem}.tif")
        shutil.copy(world / "mask.npy", masks / f"{stem}.npy")
    np.save(masks / "S2.npy", np.full(np.load(world / "mask.npy").shape, np.nan))  # the third slide's mask
    argv = [wsi, world / "model.ckpt", world / "cfg.json", masks, out, "--num_workers", "0"]
    status, err = call(probs_map.main, argv, capsys)
    assert status == 1 and "Traceback" not in err  # S0 and S1 done, S2 listed
    assert "non-finite values" in (out / "S2.failed.txt").read_text()
    assert (out / "S0.npy").is_file() and (out / "S1.npy").is_file() and not (out / "S2.npy").exists()
    # Another checkpoint (the same weights, saved again with other bytes): every map is made again.
    ckpt = torch.load(world / "model.ckpt", weights_only=True)
    ckpt["epoch"] = 2
    torch.save(ckpt, tmp_path / "other.ckpt")
    before = (out / "S0.json").read_text()
    shutil.copy(world / "mask.npy", masks / "S2.npy")
    status, err = call(probs_map.main, [wsi, tmp_path / "other.ckpt", *argv[2:]], capsys)
    assert status == 0, err
    assert (out / "S0.json").read_text() != before and (out / "S2.npy").is_file()
    assert {json.loads((out / f"{s}.json").read_text())["ckpt"] for s in ("S0", "S1", "S2")} == \
        {str(tmp_path / "other.ckpt")}


def test_probs_map_map_with_failed_positions_is_not_finished(world, tmp_path, capsys):
    wsi, masks, out = tmp_path / "wsi", tmp_path / "masks", tmp_path / "out"
    for folder in (wsi, masks):
        folder.mkdir()
    shutil.copy(world / "damaged" / "Tumor_001.tif", wsi / "S0.tif")
    shutil.copy(world / "mask.npy", masks / "S0.npy")
    argv = [wsi, world / "model.ckpt", world / "cfg.json", masks, out, "--num_workers", "0"]
    assert call(probs_map.main, argv, capsys)[0] == 1
    listed = (out / "S0.failed.txt").read_text()
    # Still damaged: computed again and listed again.
    os.utime(out / "S0.npy", (0, 0))
    assert call(probs_map.main, argv, capsys)[0] == 1
    assert os.stat(out / "S0.npy").st_mtime > 0 and (out / "S0.failed.txt").read_text() == listed
    # The slide replaced by a good copy: the map is made whole and the list removed.
    shutil.copy(world / "slides" / "Tumor_001.tif", wsi / "S0.tif")
    status, err = call(probs_map.main, argv, capsys)
    assert status == 0, err
    assert not (out / "S0.failed.txt").exists()
    single = tmp_path / "single.npy"
    assert call(probs_map.main, [world / "slides" / "Tumor_001.tif", *argv[1:3], world / "mask.npy", single,
                                 "--num_workers", "0"], capsys)[0] == 0
    assert np.array_equal(np.load(out / "S0.npy"), np.load(single))


def test_an_output_that_became_a_folder_leaves_no_orphan_sidecar(world, tmp_path):
    (tmp_path / "X.npy").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        save_array(tmp_path / "X.npy", np.zeros((2, 2)), info=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.npy"]


def test_patch_gen_lists_a_patch_path_that_is_a_folder_and_writes_the_rest(world, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "5.png").mkdir(parents=True)
    (out / "5.png" / "mine.txt").write_text("a user's file")
    status, err = call(patch_gen.main, [world / "slides", world / "coords.txt", out, "--patch_size", "32",
                                        "--num_process", "1"], capsys)
    assert status == 1 and "Traceback" not in err
    assert "5.png is a folder" in (out / "failed.txt").read_text()
    assert len(list(out.glob("*.png"))) == 16 and (out / "5.png" / "mine.txt").read_text() == "a user's file"


# 6. Numbers and sizes -------------------------------------------------------------------------------------------------
NUMBERS = [
    (annotation_mask.main, ["--size", "100000000", "100000000"], "needs"),
    (annotation_mask.main, ["--size", "512", "512", "--mpp", "-1"], "--mpp"),
    (annotation_mask.main, ["--size", "512", "512", "--mpp", "0"], "--mpp"),
    (export.main, ["--dpi", "100000"], "--dpi"),
    (export.main, ["--level", "99"], "--level"),
    (nms.main, ["--level", "99"], "--level"),
    (check_slides.main, ["--level", "-2"], "--level"),
    (check_slides.main, ["--workers", "0"], "--workers"),
    (train.main, ["--epochs", "0"], "--epochs"),
    (tissue_mask.main, ["--RGB_min", "300"], "--RGB_min"),
    (sample_coords.main, ["--rgb_min", "300"], "--rgb_min"),
]


@pytest.mark.parametrize("index", range(len(NUMBERS)))
def test_numbers_and_sizes_out_of_range_are_one_line(world, tmp_path, capsys, index):
    main, options, expected = NUMBERS[index]
    w, out = world, tmp_path / "out"
    base = {
        annotation_mask.main: [w / "jsons" / "Tumor_001.json", out / "m.tif"],
        export.main: ["heatmap", w / "maps" / "Tumor_001.npy", out / "h.png"],
        nms.main: [w / "maps" / "Tumor_001.npy", out / "d.csv"],
        check_slides.main: [w / "slides"],
        train.main: [w / "train" / "cfg.json", out, "--num_workers", "0"],
        tissue_mask.main: [w / "slides" / "Tumor_001.tif", out / "m.npy"],
        sample_coords.main: [w / "slides", w / "jsons", out],
    }[main]
    if main is annotation_mask.main and "--size" not in options:
        base = [*base, "--size", "512", "512"]
    status, err = call(main, [*base, *options], capsys)
    assert status == 2
    assert_one_error(err, expected)
    assert not out.exists()


def test_a_heatmap_figure_too_large_to_draw_is_one_line(tmp_path, capsys):
    np.save(tmp_path / "thin.npy", np.zeros((2, 4000)))
    status, err = call(export.main, ["heatmap", tmp_path / "thin.npy", tmp_path / "h.png"], capsys)
    assert status == 2
    assert_one_error(err, "larger than matplotlib draws", "--plain")
    assert call(export.main, ["heatmap", tmp_path / "thin.npy", tmp_path / "h.png", "--plain"], capsys)[0] == 0


# 7. Minor cases ----------------------------------------------------------------------------------------------------
def test_patch_gen_refuses_an_empty_coordinate_list(world, tmp_path, capsys):
    write_coords(tmp_path / "empty.txt", [])
    status, err = call(patch_gen.main, [world / "slides", tmp_path / "empty.txt", tmp_path / "out"], capsys)
    assert status == 2
    assert_one_error(err, "empty.txt", "no coordinates")
    assert not (tmp_path / "out").exists()


def test_slide_auc_warns_about_an_exclude_typo(world, tmp_path, capsys, caplog):
    (tmp_path / "labels.csv").write_text("Tumor_001,Tumor\nNormal_001,Normal\n")
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "Tumor_001.npy", np.full((4, 4), 0.9))
    np.save(maps / "Normal_001.npy", np.full((4, 4), 0.1))
    status, err = call(slide_auc.main, [maps, tmp_path / "labels.csv", tmp_path / "s.csv", "--exclude",
                                        "Tumour_001"], capsys)
    assert status == 0, err
    assert "--exclude names slides without a label" in caplog.text and "Tumour_001" in caplog.text


def test_a_truncated_slide_says_it_is_truncated(world, tmp_path, capsys):
    status, err = call(tissue_mask.main, [world / "truncated" / "Tumor_001.tif", tmp_path / "m.npy", "--level",
                                          "3"], capsys)
    assert status == 2
    assert_one_error(err, "no level 3", "the file is truncated")


def test_check_slides_counts_regions_decoded_not_tried(world, tmp_path, capsys):
    shutil.copytree(world / "truncated", tmp_path / "truncated")
    try:
        status = check_slides.main([str(tmp_path / "truncated"), "--level", "3"])
    except SystemExit as exit_info:
        status = exit_info.code
    out = capsys.readouterr().out
    assert status == 1
    first = out.splitlines()[0]
    read, tried = (int(v) for v in first.split(" regions tried decoded")[0].split(", ")[-1].split(" of "))
    assert read < tried and "UNUSABLE" in first
    assert "the file is truncated" in out
