"""wsi/inference/jobs.py: the maps a run computes, and when a map that exists is done (resume)."""

from dataclasses import replace

import numpy as np
import pytest

from wsi.arrays import ArrayInfo, save_array
from wsi.data.slide import open_slide
from wsi.data.tissue import load_tissue_mask
from wsi.errors import InputError
from wsi.inference.jobs import Job, job_files, not_done, plan_jobs
from tests.helpers import make_slide

SETTINGS = dict(ckpt_sha256="c" * 64, cfg_sha256="f" * 64, mode_asked="fast", eight_avg=False)


@pytest.fixture()
def job(tmp_path):
    slide = make_slide(tmp_path / "Test_001.tif")
    with open_slide(slide) as handle:
        mask = np.zeros(handle.level_dimensions[4], dtype=bool)
    mask[3:6, 4:7] = True
    np.save(tmp_path / "Test_001_mask.npy", mask)
    return Job(slide, tmp_path / "Test_001_mask.npy", tmp_path / "out" / "Test_001.npy")


def _write_map(job, **extra):
    with open_slide(job.slide) as slide:
        tissue, geometry = load_tissue_mask(job.mask, slide)
        info = ArrayInfo.of("probs_map", slide, geometry, mask_sha256=_digest(job.mask), **{**SETTINGS, **extra})
    save_array(job.output, np.where(tissue, 0.5, 0.0), info)
    return info


def _digest(path):
    from wsi.fileio import file_digest

    return file_digest(path)


def test_a_map_is_done_only_when_complete_from_this_slide_with_these_settings(job, caplog):
    assert "not a complete map" in not_done(job, SETTINGS)  # no map yet
    info = _write_map(job)
    assert not_done(job, SETTINGS) == ""
    assert "eight_avg True (made with False)" in not_done(job, {**SETTINGS, "eight_avg": True})
    assert "mode_asked faithful" in not_done(job, {**SETTINGS, "mode_asked": "faithful"})
    report = job_files(job)[0][2]
    report.write_text("positions that failed\n")
    assert "lists positions that could not be read" in not_done(job, SETTINGS)
    report.unlink()
    # A map cut short is not done.
    data = job.output.read_bytes()
    job.output.write_bytes(data[:-8])
    assert "not a complete map" in not_done(job, SETTINGS)
    job.output.write_bytes(data)
    # A sidecar naming another slide: computed again.
    save_array(job.output, np.load(job.output), replace(info, slide=replace(info.slide, name="Test_002.tif",
                                                                            quickhash="0" * 64)))
    assert "made from another slide (Test_002.tif)" in not_done(job, SETTINGS)
    from wsi.arrays import sidecar_path

    sidecar_path(job.output).unlink()  # a map without a sidecar (the original's?) is kept, and said so
    with caplog.at_level("WARNING"):
        assert not_done(job, SETTINGS) == ""
    assert "no sidecar says how it was made" in caplog.text


def test_job_files_name_the_outputs_and_inputs(job):
    outputs, inputs = job_files(job)
    assert [p.name for p in outputs] == ["Test_001.npy", "Test_001.json", "Test_001.failed.txt"]
    assert [p.name for p in inputs] == ["Test_001.tif", "Test_001_mask.npy", "Test_001_mask.json"]


def test_plan_jobs_for_one_slide_and_for_a_folder(tmp_path):
    one = plan_jobs(tmp_path / "a.tif", tmp_path / "a.npy", tmp_path / "out" / "a")
    assert one == [Job(tmp_path / "a.tif", tmp_path / "a.npy", tmp_path / "out" / "a.npy")]  # .npy appended
    slides, masks = tmp_path / "slides", tmp_path / "masks"
    slides.mkdir(), masks.mkdir()
    for name in ("b.tif", "a.svs", "c.tif"):
        (slides / name).write_bytes(b"")
    jobs = plan_jobs(slides, masks, tmp_path / "maps")
    assert [(j.slide.name, j.mask.name, j.output.name) for j in jobs] == [
        ("a.svs", "a.npy", "a.npy"), ("b.tif", "b.npy", "b.npy"), ("c.tif", "c.npy", "c.npy")]
    with pytest.raises(InputError, match="MASK must be the folder of tissue masks"):
        plan_jobs(slides, tmp_path / "a.npy", tmp_path / "maps")
    (slides / "a.tif").write_bytes(b"")
    with pytest.raises(InputError, match="several slides share the stem 'a'"):
        plan_jobs(slides, masks, tmp_path / "maps")
