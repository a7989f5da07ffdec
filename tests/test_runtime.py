"""wsi/model/runtime.py: OpenVINO as an optional CPU runtime, its telemetry kept out of the process in either
import order, and the fall-back to PyTorch's pass (one log line) when it cannot run.

Every case runs in a subprocess under the network guard (tests/network_guard: any AF_INET/AF_INET6 connect or
send, or a host-name lookup, ends the process and is logged) with a fresh ``$HOME`` and without the CI variables
that would switch OpenVINO's telemetry off by themselves. A broken install is a real ``openvino`` package on
``PYTHONPATH`` that fails the way releases have failed (a library that does not load, ``convert_model`` gone), so
those cases run with or without the extra installed.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import ROOT

GUARD = ROOT / "tests" / "network_guard"
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
requires_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino not installed (the openvino extra)")


def run_guarded(code, tmp_path, *args, pythonpath=(), module=None):
    """Run ``code`` (or ``-m module``) under the network guard with a fresh $HOME; returns (process, home)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "PYTHONPATH")}
    env.update(HOME=str(home), NETWORK_GUARD_LOG=str(tmp_path / "network.log"),
               PYTHONPATH=os.pathsep.join([str(GUARD), *map(str, pythonpath), str(ROOT)]))
    command = [sys.executable, "-m", module, *args] if module else [sys.executable, "-c", textwrap.dedent(code)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    return done, home


def telemetry_state(home):
    """Whatever OpenVINO's telemetry keeps under $HOME (consent file, client id, counters: ``intel/``)."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if "intel" in p.parts or "telemetry" in p.name)


def test_the_guard_stops_connections_and_lookups(tmp_path):
    """The guard itself: a TCP connect to an address, a lookup of a name, each end the process (status 86)."""
    for code in ("import socket; socket.socket().connect(('127.0.0.1', 9))",
                 "import urllib.request; urllib.request.urlopen('http://example.invalid/', timeout=1)"):
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(GUARD),
               "NETWORK_GUARD_LOG": str(tmp_path / "network.log")}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 86 and "network guard: socket." in done.stderr
        assert "network guard: socket." in (tmp_path / "network.log").read_text()
        (tmp_path / "network.log").unlink()


@requires_openvino
def test_openvino_runs_with_its_telemetry_out_of_the_process(tmp_path):
    done, home = run_guarded("""
        import sys, torch
        from wsi.model import MODELS
        from wsi.model.inference import inference_model
        net = inference_model(MODELS["resnet18"](num_nodes=9).eval(), runtime="openvino", crop=32)
        feats, logits = net.embed(torch.zeros(3, 3, 32, 32))
        assert net.runtime == "openvino" and logits.shape == (3,)
        # Imported by anyone after us, the telemetry package still does not load.
        try:
            import openvino_telemetry
        except ImportError:
            loaded = sorted(name for name, m in sys.modules.items() if "telemetry" in name and m is not None)
            print("hidden", [name for name in loaded if name.startswith("openvino_telemetry")])
            print("openvino.tools.ovc.telemetry_stub" in loaded)
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # No module of the telemetry package in the process; OpenVINO runs its own no-op stub instead.
    assert done.stdout.splitlines() == ["hidden []", "True"]
    assert telemetry_state(home) == []


@requires_openvino
def test_openvino_loaded_before_us_with_its_telemetry_is_not_used(tmp_path):
    """The other import order: the real telemetry package already in the process (imported, nothing sent yet).
    Then OpenVINO is refused: `auto` falls back to PyTorch's pass with one log line, `openvino` is one error."""
    done, home = run_guarded("""
        import logging, torch
        import openvino_telemetry  # as a process that imported OpenVINO before us has it
        from wsi.model import MODELS
        from wsi.model.inference import inference_model
        from wsi.model.runtime import RuntimeUnavailable
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        model = MODELS["resnet18"](num_nodes=9).eval()
        net = inference_model(model, runtime="openvino", crop=32, fallback=True)
        print(net.runtime, net.channels_last)
        try:
            inference_model(model, runtime="openvino", crop=32)
        except RuntimeUnavailable as err:
            print("refused:", err)
        import sys
        print("openvino" in sys.modules)
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    refusal = "openvino: imported earlier in this process with its usage telemetry live; not used"
    assert done.stdout.splitlines() == ["torch True", f"refused: {refusal}", "False"]
    assert done.stderr.splitlines() == [f"WARNING {refusal}; using PyTorch's folded channels_last pass instead"]
    assert telemetry_state(home) == []


BROKEN = {
    # A wheel whose shared library does not load on this machine.
    "import": "raise ImportError('libopenvino.so.2600: cannot open shared object file')\n",
    # A release that moved the conversion API (the AttributeError the issue saw).
    "convert": "class Core:\n    pass\n",
}


def broken_openvino(tmp_path, how):
    package = tmp_path / f"broken_{how}" / "openvino"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(BROKEN[how])
    return package.parent


@pytest.mark.parametrize("how, reason", [
    ("import", "openvino: cannot be imported (ImportError: libopenvino.so.2600: cannot open shared object file)"),
    ("convert", "openvino: the conversion failed (AttributeError: module 'openvino' has no attribute "
                "'convert_model')"),
])
def test_a_broken_openvino_falls_back_to_pytorch_in_one_line(tmp_path, how, reason):
    """probs_map.py with the default --runtime auto: the map is made by PyTorch's pass, one warning, no traceback;
    the same with --runtime openvino is one error line and exit 2."""
    from tests.helpers import make_slide, randomised_model
    from wsi.model.checkpoint import save_checkpoint

    slide = make_slide(tmp_path / "slide.tif", 1600, 1088)  # level 6: 25 × 17
    cfg = json.loads((ROOT / "configs" / "demo_crf.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    save_checkpoint(tmp_path / "m.ckpt", randomised_model(), epoch=1, step=1)
    mask = np.zeros((25, 17), dtype=bool)
    mask[8:11, 5:8] = True
    np.save(tmp_path / "mask.npy", mask)
    args = [str(slide), str(tmp_path / "m.ckpt"), str(tmp_path / "cfg.json"), str(tmp_path / "mask.npy")]
    path = [broken_openvino(tmp_path, how)]

    done, home = run_guarded(None, tmp_path, *args, str(tmp_path / "auto.npy"), "--num_workers", "0",
                             pythonpath=path, module="wsi.bin.probs_map")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "falls back" in line or "instead" in line]
    assert len(warnings) == 1 and warnings[0].endswith(f"{reason}; using PyTorch's folded channels_last pass "
                                                       "instead")
    assert "CNN: BatchNorm folded, channels_last" in done.stderr
    assert np.count_nonzero(np.load(tmp_path / "auto.npy")) == mask.sum()

    if how == "import":
        return
    done, _ = run_guarded(None, tmp_path, *args, str(tmp_path / "ov.npy"), "--runtime", "openvino",
                          pythonpath=path, module="wsi.bin.probs_map")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [f"probs_map: error: {reason}"]
    assert not (tmp_path / "ov.npy").exists() and telemetry_state(home) == []


@requires_openvino
def test_two_calls_of_the_openvino_pass_do_not_alias(tmp_path):
    """The request reuses its output buffers between calls: the first call's outputs must stay as they were after
    a second call of the same shape (one copy of the outputs, and it is the caller's)."""
    done, _ = run_guarded("""
        import torch
        from wsi.model import MODELS
        from wsi.model.inference import inference_model
        net = inference_model(MODELS["resnet18"](num_nodes=9).eval(), runtime="openvino", crop=32)
        gen = torch.Generator().manual_seed(0)
        first, second = (torch.rand(4, 3, 32, 32, generator=gen) for _ in range(2))
        feats, logits = net.embed(first)
        kept = feats.clone(), logits.clone()
        feats_2, logits_2 = net.embed(second)
        assert not torch.equal(logits_2, kept[1])  # another input, other outputs
        print(torch.equal(feats, kept[0]), torch.equal(logits, kept[1]))
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "True"]


# The compiled pass itself: its precision setting, and two calls that do not share output buffers ------------------
OPENVINO_PASS = """
import json
import torch
from tests.helpers import randomised_model
from wsi.model.runtime import import_openvino, runtime_embed

ov = import_openvino()
compiled, real = [], ov.Core.compile_model


def spy(self, *args, **kwargs):  # the CompiledModel the runtime makes, to read its settings back
    model = real(self, *args, **kwargs)
    compiled.append(model)
    return model


ov.Core.compile_model = spy
model = randomised_model()
embed = runtime_embed(model, "openvino", 32, threads=1)
first_in, second_in = (torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
first = embed(first_in)
kept = [t.clone() for t in first]
second = embed(second_in)
with torch.no_grad():
    reference = model.embed(first_in)
print(json.dumps({
    "precision": compiled[-1].get_property("INFERENCE_PRECISION_HINT").get_type_name(),
    "first_kept": all(torch.equal(a, b) for a, b in zip(first, kept)),
    "calls_differ": not torch.equal(first[1], second[1]),
    "dtypes": [str(t.dtype) for t in (*first, *second)],
    "error": max(float((a - b).abs().max()) for a, b in zip(first, reference)),
}))
"""


@pytest.fixture(scope="module")
def openvino_pass(tmp_path_factory):
    """What the OpenVINO pass of a random ResNet-18 + CRF gives, run under the network guard (as above)."""
    tmp_path = tmp_path_factory.mktemp("openvino_pass")
    done, _ = run_guarded(OPENVINO_PASS, tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@requires_openvino
def test_openvino_pass_is_compiled_in_float32(openvino_pass):
    # The setting itself, not only the map: on a CPU with bfloat16 units (this machine's has AVX512-BF16) OpenVINO
    # would lower the precision by itself, and a map within 1e-5 on one machine would drift on another.
    assert openvino_pass["precision"] == "f32"
    assert openvino_pass["dtypes"] == ["torch.float32"] * 4
    assert openvino_pass["error"] <= 1e-4  # the float32 pass of the same network


@requires_openvino
def test_openvino_pass_second_call_leaves_the_first_outputs_alone(openvino_pass):
    # The infer request reuses its output buffers: outputs handed out without a copy change under the caller.
    assert openvino_pass["calls_differ"]
    assert openvino_pass["first_kept"]
