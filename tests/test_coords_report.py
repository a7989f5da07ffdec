"""The coordinate-list report (wsi/bin/coords_report.py): the shipped validation lists and sampled lists."""

import numpy as np
import pytest

from tests.helpers import COORDS, JSONS, make_dataset
from wsi.bin import coords_report, sample_coords
from wsi.data.coords import read_coords, write_coords
from wsi.data.annotation import load_annotations
from wsi.data.labels import grid_labels


def total_line(out):
    line = next(line for line in out.splitlines() if line.startswith("total"))
    return line.split()


def test_shipped_validation_lists_reproduce_the_reference_statistics(capsys, tmp_path):
    coords = COORDS
    status = coords_report.main([str(JSONS / "valid"), "--tumor", str(coords / "tumor_valid.txt"),
                                 "--normal", str(coords / "normal_valid.txt"), "--output", str(tmp_path / "r.txt")])
    out = capsys.readouterr().out
    assert status == 0 and (tmp_path / "r.txt").read_text() == out
    # total: tumour count, inside, in_neg, on_edge, pos_frac; normal count, inside, on_edge, hard, pos_frac
    assert total_line(out)[1:] == ["20000", "20000", "47", "1", "0.8277", "20000", "2", "2", "10002", "0.0600"]
    # The 2 normal centres "inside" lie exactly on an edge (inside by modern skimage; none strictly inside).
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.startswith(("Tumor", "Normal"))}
    assert len(lines) == 29
    assert all(lines[f"Tumor_{k}"][0] == "2000" for k in range(101, 111))
    assert lines["Tumor_102"][5:9] == ["3915", "2", "2", "3548"]
    assert lines["Tumor_110"][5] == "0"
    rates = {kind: np.array(line.split(": ")[1].split(), float) for line in out.splitlines() if "rate" in line
             for kind in [line.split()[0]]}
    contract = {"tumor": [.786, .821, .794, .825, 1, .831, .783, .819, .789],
                "normal": [.066, .069, .070, .067, 0, .067, .064, .067, .069]}
    for kind in contract:
        assert np.abs(rates[kind] - contract[kind]).max() <= 0.0015


def test_sampled_lists_all_inside_none_inside(tmp_path, capsys):
    truth = make_dataset(tmp_path, [("Tumor_001", 2048, 2048, 1, 2, True, True),
                                    ("Normal_001", 1024, 1024, 3, 0, False, False)])
    assert sample_coords.main([str(tmp_path / "wsi"), str(tmp_path / "json"), str(tmp_path / "lists"),
                               "--mask_path", str(tmp_path / "mask"), "--pids", "Tumor_001", "Normal_001",
                               "--tumor_per_slide", "100"]) == 0
    capsys.readouterr()
    tumour = read_coords(tmp_path / "lists" / "tumor_train.txt")
    normal = read_coords(tmp_path / "lists" / "normal_train.txt")
    assert coords_report.main([str(tmp_path / "json"), "--tumor", str(tmp_path / "lists" / "tumor_train.txt"),
                               "--normal", str(tmp_path / "lists" / "normal_train.txt")]) == 0
    total = total_line(capsys.readouterr().out)
    annotation = truth["Tumor_001"][0]
    xy = np.array([(x, y) for _, x, y in tumour])
    expected = grid_labels(annotation, xy).mean()
    assert total[1:3] == ["100", "100"] and total[6:8] == ["100", "0"]
    assert float(total[5]) == pytest.approx(expected, abs=5e-5)
    assert 0 < float(total[5]) < 1


def test_hard_negatives_on_the_grid_are_counted(tmp_path, capsys):
    make_dataset(tmp_path, [("Tumor_001", 2048, 2048, 1, 1, False, True)])
    # (128·i + 64, 128·j + 64) is on the default grid; with --hard_stride 64 the grid is (64·i + 32, 64·j + 32).
    write_coords(tmp_path / "normal.txt", [("Tumor_001", 64, 192), ("Tumor_001", 65, 192), ("Tumor_001", 0, 0),
                                           ("Tumor_001", 32, 32), ("Tumor_001", 96, 160)])
    assert coords_report.main([str(tmp_path / "json"), "--normal", str(tmp_path / "normal.txt")]) == 0
    total = total_line(capsys.readouterr().out)
    assert total[1:6] == ["0", "0", "0", "0", "-"] and total[6:10] == ["5", "0", "0", "1"]
    assert coords_report.main([str(tmp_path / "json"), "--normal", str(tmp_path / "normal.txt"),
                               "--hard_stride", "64"]) == 0
    assert total_line(capsys.readouterr().out)[9] == "2"


def test_exclude_negative_labels(tmp_path, capsys):
    truth = make_dataset(tmp_path, [("Tumor_001", 2048, 2048, 1, 1, True, True)])
    annotation = load_annotations(tmp_path / "json", ["Tumor_001"])["Tumor_001"]
    hole = annotation.negative[0].vertices().mean(axis=0).astype(int)
    assert annotation.inside_polygons(hole, False) and annotation.inside_polygons(hole, True)
    write_coords(tmp_path / "tumor.txt", [("Tumor_001", *hole)])
    for extra, inside in (([], "1"), (["--exclude_negative"], "0")):
        assert coords_report.main([str(tmp_path / "json"), "--tumor", str(tmp_path / "tumor.txt"), *extra]) == 0
        total = total_line(capsys.readouterr().out)
        assert total[1:4] == ["1", inside, "1"]


@pytest.mark.parametrize("setup, message", [
    ("nothing", "give a list to report on"),
    ("missing_json", "Tumor_002.json: no annotation for listed slide Tumor_002"),
    ("bad_line", "line 2 has 2 fields"),
])
def test_errors_are_one_line(tmp_path, capsys, setup, message):
    make_dataset(tmp_path, [("Tumor_001", 1024, 1024, 1, 1, False, True)])
    lists = tmp_path / "tumor.txt"
    if setup == "missing_json":
        write_coords(lists, [("Tumor_001", 1, 2), ("Tumor_002", 3, 4)])
    else:
        lists.write_text("Tumor_001,1,2\nTumor_001,3\n")
    args = [str(tmp_path / "json")] + ([] if setup == "nothing" else ["--tumor", str(lists), "--output",
                                                                     str(tmp_path / "report.txt")])
    assert coords_report.main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("coords_report: error:") and message in err
    assert captured.out == "" and not (tmp_path / "report.txt").exists()
