"""Shared test helpers: paths to the fixtures and to the reference data beside the project."""

import importlib.metadata
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The scripts that tests run as processes (`python wsi/bin/X.py`, the stage scripts, the benches) import the
# installed package, as they do after the README's install command. In an environment where it is not installed
# (a checkout used in place), the repository root goes on their path instead.
try:
    importlib.metadata.distribution("ncrf")
except importlib.metadata.PackageNotFoundError:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
DATA = Path(__file__).resolve().parent / "data"
# The original's data files shipped in the repository (the design card's layout): its 268 annotation JSONs and its
# two validation coordinate lists, each folder with a MANIFEST.tsv of the original's git blob SHA-1s.
JSONS = ROOT / "jsons"
COORDS = ROOT / "coords"
# The original NCRF's repository files as copied beside the project in ../shared on the development machines (a
# user's clone has none: tests that need them skip). The files the tests read are now in the repository (above).
SHARED = Path(os.environ.get("NCRF_SHARED", ROOT.parent / "shared"))
NCRF_REFERENCE = SHARED / "ncrf-reference"

requires_reference = pytest.mark.skipif(
    not NCRF_REFERENCE.is_dir(), reason=f"reference data not found at {NCRF_REFERENCE} (skip: ../shared absent)"
)


def data_path(name):
    """Path of a committed test fixture under tests/data."""
    return DATA / name


@pytest.fixture
def cmu_svs():
    """The real H&E crop (CMU-1, CC0, OpenSlide test data): 2220×2967 px at 0.499 µm/px, one level."""
    return data_path("cmu_small_region.svs")


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning OpenMP threads make each step 3-5× slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
