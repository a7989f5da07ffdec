"""bench/demo_spread.py: the demo under other CPU kernels. ``--quick`` checks the script on a tiny demo; the band
test runs the full demo once under AVX2 kernels (not this machine's default) and checks the README's band."""

import json
import shutil

import pytest

from bench.demo_spread import BAND, MODELS, in_band, main

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the demo scripts need bash")


def test_quick_mode_runs_two_settings_and_writes_the_spread_and_the_plot(tmp_path, capsys):
    rows, table = main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert [(row["setting"], row["seed"]) for row in rows] == [("default", 0), ("avx2", 0)]
    for row in rows:
        assert (tmp_path / row["run"] / "results" / "summary_untrained.txt").exists()
        for tag in MODELS:
            numbers = row["models"][tag]
            assert 0 <= numbers["froc"] <= 1 and numbers["num_tumours"] == 1 and numbers["fps"] >= 0
            assert numbers["valid_loss"] is None  # the untrained control: no training, no validation
    for tag in MODELS:
        median, low, high = table[tag]["fps"]
        values = [row["models"][tag]["fps"] for row in rows]
        assert (low, high) == (min(values), max(values)) and low <= median <= high
    assert "Spread over the runs" in out and "default_seed0" in out and "avx2_seed0" in out
    saved = json.loads((tmp_path / "demo_spread.json").read_text())
    assert [row["run"] for row in saved["rows"]] == ["default_seed0", "avx2_seed0"]
    assert (tmp_path / "demo_spread.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --reuse keeps the runs: no demo runs again, the same numbers come out
    again, _ = main(["--quick", "--out", str(tmp_path), "--reuse"])
    assert [row["seconds"] for row in again] == [None, None]
    assert [row["models"] for row in again] == [row["models"] for row in rows]


def test_the_band_is_what_the_readme_states():
    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    for tag, name in (("crf", "NCRF"), ("base", "baseline")):
        low, high = BAND[tag]["fps"]
        assert f"FPs {low}–{high}" in readme


@pytest.mark.slow  # a whole demo with 2 × 60 training steps (~4 min on 2 idle cores): too long for the default suite
def test_the_demo_under_avx2_kernels_is_inside_the_band(tmp_path):
    """The full demo (seed 0) with AVX2 kernels instead of this CPU's default: its table lies inside the band."""
    rows, _ = main(["--settings", "avx2", "--seeds", "0", "--single_thread", "-1", "--out", str(tmp_path)])
    (row,) = rows
    for tag in MODELS:
        assert row["models"][tag]["valid_loss"] is not None  # trained, validated
        assert in_band(tag, row["models"][tag]), (tag, row["models"][tag], BAND[tag])
