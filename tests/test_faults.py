"""The fault matrix (issue 12): every script against every class of fault that applies to it.

This file holds the classes that run across all the scripts (wsi/cli.py's one-line errors and the outputs' checks);
the faults of one module are beside it: tests/test_faults_inference.py (probs_map: damaged tiles, stopped runs,
junk outputs, masks), tests/test_faults_patches.py (patch_gen), tests/test_faults_training.py (train),
test_tissue_mask.py, test_xml2json.py and test_slide.py. The synthetic world is conftest.py's ``world``.

Classes: an output that cannot be written (under a regular file, or on /proc), an output that is an existing
folder (or, for folder outputs, an existing file), a damaged tile (one level-0 JPEG tile of a synthetic slide
overwritten with zeros), a truncated and a 0-byte slide, non-UTF-8 text, an interrupted run (SIGTERM, or the
temporaries a ``kill -9`` leaves) then a re-run, junk in an output folder, and out-of-range numbers.

Each case asserts the exit status, exactly one ``error:`` line on stderr and no traceback, no partial or
temporary file left, and, for damaged tiles, that every other position or patch is computed (equal to the run
on the undamaged slide). Scripts run in-process through ``main([...])``; the SIGTERM cases run a subprocess.
"""

import time

import pytest

from tests.helpers import ROOT, UNWRITABLE, assert_one_error, call, temporaries, unwritable, write_train_config
from wsi.bin import (Evaluation_FROC, annotation_mask, camelyon16xml2json, coords_report, export, hard_negatives,
                     nms, patch_gen, plot_W, probs_map, sample_coords, slide_auc, synthetic_slide, tissue_mask,
                     train)

INVALID_UTF8 = b"Tumor_001,100,100\nTumor_001,\xff\xfe200,200\n"


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this file runs with one torch thread (tests/conftest.py)."""


# 1. Outputs that cannot be written, for every script ---------------------------------------------------------------
def output_cases(world, out):
    """``{script: (main, argv)}`` with ``out`` as the (file or folder) output of each script."""
    w = world
    return {
        "camelyon16xml2json": (camelyon16xml2json.main, [w / "xml" / "Tumor_001.xml", out]),
        "annotation_mask": (annotation_mask.main, [w / "jsons" / "Tumor_001.json", out, "--size", "512", "512"]),
        "Evaluation_FROC": (Evaluation_FROC.main, [w / "gt", w / "csv", "--json", out]),
        "coords_report": (coords_report.main, [w / "jsons", "--tumor", w / "coords.txt", "--output", out]),
        "export": (export.main, ["heatmap", w / "maps" / "Tumor_001.npy", out, "--level", "4"]),
        "hard_negatives": (hard_negatives.main, [w / "maps", w / "jsons", w / "coords.txt", "--output", out,
                                                 "--level", "4"]),
        "nms": (nms.main, [w / "maps" / "Tumor_001.npy", out, "--level", "4"]),
        "patch_gen": (patch_gen.main, [w / "slides", w / "coords.txt", out, "--patch_size", "32",
                                       "--num_process", "1"]),
        "plot_W": (plot_W.main, [w / "model.ckpt", "--out", out]),
        "probs_map": (probs_map.main, [w / "slides" / "Tumor_001.tif", w / "model.ckpt", w / "cfg.json",
                                       w / "mask.npy", out, "--num_workers", "0"]),
        "sample_coords": (sample_coords.main, [w / "slides", w / "jsons", out, "--level", "3",
                                               "--tumor_per_slide", "5"]),
        "slide_auc": (slide_auc.main, [w / "maps", w / "labels.csv", out]),
        "synthetic_slide": (synthetic_slide.main, [out, "--size", "256", "--num_normal", "0",
                                                   "--tumor_size", "60", "90"]),
        "tissue_mask": (tissue_mask.main, [w / "slides" / "Tumor_001.tif", out, "--level", "3"]),
        "train": (train.main, [w / "train" / "cfg.json", out, "--num_workers", "0"]),
    }


FOLDER_OUTPUTS = {"patch_gen", "sample_coords", "synthetic_slide", "train"}
SCRIPTS = sorted(output_cases(ROOT, ROOT))


@pytest.mark.parametrize("kind", UNWRITABLE)
@pytest.mark.parametrize("script", SCRIPTS)
def test_unwritable_output_fails_first_in_one_line(world, tmp_path, capsys, script, kind):
    out = unwritable(world, kind, "out.json" if script != "plot_W" else "w.png")
    main, argv = output_cases(world, out)[script]
    start = time.perf_counter()
    status, err = call(main, argv, capsys)
    assert status == 2
    assert_one_error(err, "cannot write")
    assert time.perf_counter() - start < 20  # refused before the work, not after
    assert not temporaries(world)


@pytest.mark.parametrize("script", SCRIPTS)
def test_output_that_is_a_folder_or_a_file_is_refused(world, tmp_path, capsys, script):
    # camelyon16xml2json: an existing folder as JSON is a defined output (<JSON>/<stem>.json); its folder mode's
    # output folder given as an existing file is the fault instead.
    if script in FOLDER_OUTPUTS or script == "camelyon16xml2json":
        out = tmp_path / "out"
        out.write_text("I am a file")
        expected = "is a file"
    else:
        out = tmp_path / ("out.png" if script == "plot_W" else "out.npy")
        out.mkdir()
        expected = "is a folder"
    main, argv = output_cases(world, out)[script]
    if script == "camelyon16xml2json":
        argv = [world / "xml", out]
    status, err = call(main, argv, capsys)
    assert status == 2
    assert_one_error(err, expected)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # nothing written beside it
    assert not temporaries(tmp_path)


# 3. Truncated and 0-byte slides -------------------------------------------------------------------------------------
def slide_cases(world, folder, tmp_path):
    slide = world / folder / "Tumor_001.tif"
    out = tmp_path / "out"
    return {
        "tissue_mask": (tissue_mask.main, [slide, out / "m.npy", "--level", "3"], 2),
        "probs_map": (probs_map.main, [slide, world / "model.ckpt", world / "cfg.json", world / "mask.npy",
                                       out / "p.npy", "--num_workers", "0"], 2),
        "sample_coords": (sample_coords.main, [world / folder, world / "jsons", out, "--level", "3"], 2),
        # annotation_mask reads only the slide's header (size, µm per pixel): a truncated slide still has one.
        "annotation_mask": (annotation_mask.main, [world / "jsons" / "Tumor_001.json", out / "m.tif", "--wsi", slide],
                            0 if folder == "truncated" else 2),
        "export": (export.main, ["heatmap", world / "maps" / "Tumor_001.npy", out / "h.png", "--wsi", slide,
                                 "--level", "4"], 2),
        # patch_gen lists the lines of a slide it cannot open in failed.txt and writes the rest (exit 1).
        "patch_gen": (patch_gen.main, [world / folder, world / "coords.txt", out, "--patch_size", "32",
                                       "--num_process", "1"], 1),
    }


@pytest.mark.parametrize("folder", ["truncated", "empty"])
@pytest.mark.parametrize("script", ["tissue_mask", "probs_map", "sample_coords", "annotation_mask", "export",
                                    "patch_gen", "train"])
def test_truncated_and_empty_slides(world, tmp_path, capsys, script, folder):
    if script == "train":
        main, argv, expected = train.main, [write_train_config(world, tmp_path, slides=folder), tmp_path / "out",
                                            "--num_workers", "0"], 2
    else:
        main, argv, expected = slide_cases(world, folder, tmp_path)[script]
    status, err = call(main, argv, capsys)
    assert status == expected
    if expected == 2:
        assert_one_error(err, "Tumor_001.tif")
        left = sorted(p.name for p in (tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
        if script == "train":  # cfg.json and the event file are written when training starts; no checkpoint
            left = [name for name in left if name != "cfg.json" and not name.startswith("events.out")]
        assert left == []
    elif expected == 0:
        assert "Traceback" not in err and (tmp_path / "out" / "m.tif").is_file()
    else:
        assert "Traceback" not in err
        assert len((tmp_path / "out" / "failed.txt").read_text().splitlines()) == 16
    assert not temporaries(tmp_path)


# 4. Text that is not UTF-8 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", ["patch_gen", "coords_report", "hard_negatives", "slide_auc", "export",
                                    "Evaluation_FROC", "probs_map", "train", "camelyon16xml2json"])
def test_non_utf8_text_is_one_line_naming_file_and_line(world, tmp_path, capsys, script):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(INVALID_UTF8)
    out = tmp_path / "out"
    w = world
    if script == "patch_gen":
        main, argv = patch_gen.main, [w / "slides", bad, out, "--patch_size", "32", "--num_process", "1"]
    elif script == "coords_report":
        main, argv = coords_report.main, [w / "jsons", "--tumor", bad]
    elif script == "hard_negatives":
        main, argv = hard_negatives.main, [w / "maps", w / "jsons", bad, "--output", out / "n.txt", "--level", "4"]
    elif script == "slide_auc":
        bad.write_bytes(b"Tumor_001,Tumor\nTumor_\xff02,Normal\n")
        main, argv = slide_auc.main, [w / "maps", bad, out / "s.csv"]
    elif script == "export":
        bad.write_bytes(b"0.9,200,200\n0.8,\xff,1\n")
        main, argv = export.main, ["geojson", out / "d.geojson", "--csv", bad]
    elif script == "Evaluation_FROC":
        (tmp_path / "csv").mkdir()
        (tmp_path / "csv" / "Tumor_001.csv").write_bytes(b"0.9,200,200\n0.8,\xff,1\n")
        main, argv = Evaluation_FROC.main, [w / "gt", tmp_path / "csv"]
        bad = tmp_path / "csv" / "Tumor_001.csv"
    elif script == "probs_map":
        listing = tmp_path / "slides.txt"
        listing.write_bytes(str(w / "slides" / "Tumor_001.tif").encode() + b"\n\xff\n")
        main, argv = probs_map.main, [listing, w / "model.ckpt", w / "cfg.json", w / "maps", out, "--num_workers",
                                      "0"]
        bad = listing
    elif script == "train":
        cfg = write_train_config(world, tmp_path, valid_coords=bad)
        main, argv = train.main, [cfg, out, "--num_workers", "0"]
    else:
        xml = tmp_path / "Tumor_001.xml"
        xml.write_bytes((w / "xml" / "Tumor_001.xml").read_bytes().replace(b"Annotation ", b"Annot\xffation ", 1))
        main, argv, bad = camelyon16xml2json.main, [xml, out / "t.json"], xml
    status, err = call(main, argv, capsys)
    assert status == 2
    line = assert_one_error(err, bad.name)
    if script not in ("camelyon16xml2json",):
        assert "line 2" in line
    assert not out.exists() or not any(out.iterdir())
    assert not temporaries(tmp_path)


# 7. Numbers out of range, and masks that are not masks ------------------------------------------------------------
OUT_OF_RANGE = [
    ("probs_map", "--batch_size", "0"), ("probs_map", "--num_workers", "-1"),
    ("sample_coords", "--tumor_per_slide", "-5"), ("sample_coords", "--valid_fraction", "nan"),
    ("hard_negatives", "--threshold", "nan"), ("hard_negatives", "--max_per_slide", "-1"),
    ("nms", "--prob_thred", "nan"), ("nms", "--sigma", "-1"),
    ("export", "--alpha", "2"), ("export", "--dpi", "0"),
    ("patch_gen", "--patch_size", "0"), ("patch_gen", "--level", "-1"),
    ("tissue_mask", "--level", "-1"), ("tissue_mask", "--RGB_min", "-3"),
    ("train", "--max_failed_share", "1.5"), ("train", "--epochs", "-1"),
    ("slide_auc", "--k", "0"), ("synthetic_slide", "--size", "0"), ("synthetic_slide", "--seed", "-1"),
    ("coords_report", "--patch_size", "0"), ("annotation_mask", "--tile_size", "0"),
    ("annotation_mask", "--mpp", "inf"),
]


@pytest.mark.parametrize("script,option,value", OUT_OF_RANGE)
def test_numbers_out_of_range_are_refused_before_any_output(world, tmp_path, capsys, script, option, value):
    out = tmp_path / ("out" if script in FOLDER_OUTPUTS else "out.npy")
    main, argv = output_cases(world, out)[script]
    status, err = call(main, [*argv, option, value], capsys)
    assert status == 2
    assert_one_error(err, option)
    assert err.strip().count("\n") == 0 and "usage:" not in err  # one line: argparse's usage block is not printed
    assert list(tmp_path.iterdir()) == []
