"""pyproject.toml as the one list of dependencies, the console scripts, the version, and the installed package.

The checks on the files run anywhere; the ones on the installed package (console scripts on PATH, metadata)
skip when the package is not installed in the running environment (`pip install -e .[dev]`, the README's test
command and .ci/run, installs it).
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wsi
from tests.helpers import ROOT

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
SCRIPTS = sorted(p.stem for p in (ROOT / "wsi" / "bin").glob("*.py") if p.stem != "__init__")
# The design card's stack, plus what the default path needs (openslide-bin: the C library as a wheel; tifffile,
# imagecodecs: TIFF pyramids and masks; tqdm: progress bars).
CARD = {"torch", "torchvision", "openslide-python", "numpy", "scipy", "scikit-image", "pillow", "matplotlib",
        "tensorboardX"}
DEFAULT_PATH = {"openslide-bin", "tifffile", "imagecodecs", "tqdm"}


def names(requirements):
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in requirements}


def installed():
    try:
        return importlib.metadata.distribution("ncrf")
    except importlib.metadata.PackageNotFoundError:
        return None


requires_install = pytest.mark.skipif(installed() is None, reason="the package is not installed (pip install -e .)")


def test_default_dependencies_are_the_card_stack_and_what_the_default_path_needs():
    assert names(PROJECT["dependencies"]) == CARD | DEFAULT_PATH
    extras = PROJECT["optional-dependencies"]
    assert set(extras) == {"openvino", "bench", "dev"}
    openvino, = extras["openvino"]
    assert openvino.startswith("openvino>=") and ",<" in openvino  # bounded above
    assert names(extras["bench"]) == {"monai"}
    assert {"pytest", "tensorboard", "ncrf"} == names(extras["dev"]) and "ncrf[bench,openvino]" in extras["dev"]


def test_requirements_files_only_point_at_pyproject():
    """requirements*.txt stay (the card names requirements.txt) but hold no list of their own."""
    expected = {"requirements.txt": "-e .", "requirements-dev.txt": "-e .[dev]",
                "requirements-bench.txt": "-e .[bench]"}
    for name, line in expected.items():
        lines = [x.strip() for x in (ROOT / name).read_text().splitlines() if x.strip() and not x.startswith("#")]
        assert lines == [line], name


def test_every_script_has_a_console_script_and_the_readme_names_them():
    scripts = PROJECT["scripts"]
    assert sorted(scripts) == sorted(f"ncrf-{name}" for name in SCRIPTS)
    assert all(scripts[f"ncrf-{name}"] == f"wsi.bin.{name}:main" for name in SCRIPTS)
    readme = (ROOT / "README.md").read_text()
    assert all(f"`ncrf-{name}`" in readme for name in SCRIPTS)


def test_the_version_stands_in_one_place():
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "wsi.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", wsi.__version__)
    if installed() is not None:
        assert installed().version == wsi.__version__


@requires_install
def test_the_installed_entry_points_are_the_scripts():
    points = {ep.name: ep for ep in installed().entry_points if ep.group == "console_scripts"}
    assert sorted(points) == sorted(f"ncrf-{name}" for name in SCRIPTS)
    assert all(callable(points[f"ncrf-{name}"].load()) for name in ("nms", "probs_map", "train"))


@requires_install
def test_a_console_script_runs_from_outside_the_repository(tmp_path):
    """`ncrf-nms` from a folder outside the clone, on a real map, nothing on PYTHONPATH: the installed package
    does the work. `python wsi/bin/nms.py` and `python -m wsi.bin.nms` do the same without a sys.path guard."""
    command = shutil.which("ncrf-nms", path=str(Path(sys.executable).parent))
    assert command, "ncrf-nms is not beside the interpreter: is the package installed in this environment?"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probs = np.zeros((40, 30))
    probs[5, 4], probs[30, 25] = 0.9, 0.7  # farther apart than nms.py's default radius (12 cells)
    np.save(tmp_path / "map.npy", probs)
    expected = ["0.90000,352,288", "0.70000,1952,1632"]
    for number, argv in enumerate(([command], [sys.executable, str(ROOT / "wsi" / "bin" / "nms.py")],
                                   [sys.executable, "-m", "wsi.bin.nms"])):
        done = subprocess.run([*argv, "map.npy", f"out{number}.csv", "--level", "6"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (argv, done.stderr)
        assert (tmp_path / f"out{number}.csv").read_text().splitlines() == expected
    bad = subprocess.run([command, "missing.npy", "bad.csv"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.endswith("&& python -m pytest"))
    assert 'pip install -e ".[dev]"' in command
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
