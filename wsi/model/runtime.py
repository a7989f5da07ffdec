"""The backbone pass on a CPU inference runtime: ``model.embed`` compiled by OpenVINO.

PyTorch's own CPU pass (oneDNN, BatchNorm folded, channels_last; :mod:`wsi.model.inference`) is the fastest one
PyTorch offers here; a runtime made for inference plans the whole graph (fused convolution + ReLU + residual add,
pre-packed weights, its own thread pool) and is faster again. :func:`runtime_embed` converts the (already folded)
model's :meth:`~wsi.model.resnet.ResNetGrid.embed` once and returns a drop-in ``embed(patches) -> (feats,
logits)``: torch tensors in and out, float32 throughout, so the map stays within 1e-5 of the float32 faithful map.
Only the backbone runs there; the CRF and everything after it stay in PyTorch.
"""

import functools
import importlib.util
import logging
import sys
import time

import torch
from torch import nn

from wsi.constants import RUNTIMES
from wsi.errors import InputError, ParameterError, RuntimeUnavailable

logger = logging.getLogger(__name__)


def _available(name):
    return importlib.util.find_spec(name) is not None


def _telemetry_loaded():
    """Whether the real ``openvino_telemetry`` package (or any module of it) is loaded in this process."""
    return any(module is not None for name, module in sys.modules.items()
               if name == "openvino_telemetry" or name.startswith("openvino_telemetry."))


def import_openvino():
    """``import openvino`` with its usage telemetry provably off, or :class:`RuntimeUnavailable`.

    OpenVINO reports usage to Google Analytics from ``import openvino`` on, unless the user opted out in a file
    under ``$HOME``; its only other switch is the CI variables (``CI``, ``TF_BUILD``, ``JENKINS_URL``), read
    when its telemetry starts. A pathology tool that runs on clinical data should not talk to the network, and should not
    write into the user's home, so the telemetry package is kept out of the process: ``None`` in
    ``sys.modules`` makes its import raise ``ImportError``, and OpenVINO then uses its own no-op stub. The
    guarantee is checked, not assumed, in either import order: when the real package is (or becomes) loaded in
    this process, because something imported OpenVINO before us, OpenVINO is refused and nothing of it runs here.
    """
    if _telemetry_loaded():
        raise RuntimeUnavailable("openvino: imported earlier in this process with its usage telemetry live; "
                                 "not used")
    sys.modules.setdefault("openvino_telemetry", None)  # None in sys.modules: its import raises ImportError
    try:
        import openvino
    except Exception as err:  # not installed, or a broken install (a missing shared library, ...)
        raise RuntimeUnavailable(f"openvino: cannot be imported ({_one_line(err)})") from None
    if _telemetry_loaded():
        raise RuntimeUnavailable("openvino: its usage telemetry was loaded despite being hidden; not used")
    return openvino


def _one_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def resolve_runtime(runtime, device, *, amp=False, compile=False, optimize=True):
    """The runtime a pass on ``device`` uses: ``auto`` is OpenVINO on a CPU (float32) when installed, else torch.

    torch is what runs on CUDA, with ``amp`` (bfloat16 autocast), ``compile`` and ``optimize=False`` (the model as
    loaded); naming a CPU runtime together with any of them, or on a GPU, or when the package is missing, is a
    :class:`~wsi.errors.ParameterError`. ``auto`` picks OpenVINO when it is installed; whether it can run is only
    known when it converts (:func:`runtime_embed`; the caller then falls back).
    """
    if runtime not in RUNTIMES:
        raise ParameterError(f"{{runtime}} {runtime}: not one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        if device.type == "cpu" and optimize and not (amp or compile) and _available("openvino"):
            return "openvino"
        return "torch"
    if runtime != "torch":
        clash = (f"device {device}" if device.type != "cpu" else "{amp}" if amp else "{compile}" if compile
                 else "{eager_cnn}" if not optimize else None)
        if clash:
            raise ParameterError(f"{{runtime}} {runtime}: runs the float32 pass on the CPU only, not with {clash}",
                                 aliases={"eager_cnn": "optimize=False"})
        if not _available(runtime):
            raise ParameterError(f"{{runtime}} {runtime}: the package is not installed "
                                 f"(pip install \".[{runtime}]\")")
    return runtime


class _Embed(nn.Module):
    """``model.embed`` as a module's forward, for ``torch.export``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, patches):
        return self.model.embed(patches)


@functools.lru_cache(maxsize=None)
def _openvino_core():
    """One OpenVINO ``Core`` per process. Its CPU plugin swaps the thread's alternate signal stack for one of its
    own while it starts, and puts the previous one back later; two plugins alive at once (a second ``Core`` before
    the first is collected) can put back a stack that has since been freed, and the next Python signal handler
    (SIGCHLD of a DataLoader, Ctrl-C) then kills the process with SIGSEGV. One Core, kept, starts one plugin."""
    return import_openvino().Core()


def _openvino(module, example, threads):
    ov = import_openvino()
    # torch.export (OpenVINO's default for a module is the deprecated TorchScript tracer), any number of patches.
    exported = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("patches")},))
    converted = ov.convert_model(exported)
    # f32 precision: on CPUs with bfloat16 units OpenVINO would otherwise lower the precision by itself.
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    compiled = _openvino_core().compile_model(converted, "CPU", config)
    request = compiled.create_infer_request()

    def run(array):
        # infer() returns the outputs copied out of the request's buffers, which the next call reuses: arrays of
        # the caller's own (one copy; reading the buffers themselves would alias the next call's outputs).
        return list(request.infer([array]).to_tuple())

    return run


def runtime_embed(model, runtime, crop, *, threads=None):
    """``model.embed`` compiled by ``runtime`` (``openvino``) for ``[N, 3, crop, crop]`` float32 patches on the
    CPU, any N; returns ``embed(patches) -> (feats [N, D], logits [N])`` as torch tensors.

    ``model`` is an eval-mode ResNetGrid on the CPU (BatchNorm already folded or not: the runtime folds it too);
    ``threads`` defaults to torch's intra-op threads. The conversion time is logged. Raises
    :class:`RuntimeUnavailable` (one line) when the runtime cannot be imported with its telemetry off or when any
    step of the conversion fails (a release that moved ``convert_model``, an operator it cannot convert, ...).
    """
    if runtime != "openvino":
        raise ValueError(f"runtime_embed: no CPU runtime {runtime!r}")
    threads = threads or torch.get_num_threads()
    start = time.perf_counter()
    module = _Embed(model).eval()
    example = torch.zeros(2, 3, crop, crop)
    import_openvino()
    try:
        with torch.no_grad():
            run = _openvino(module, example, threads)
            run(example.numpy())  # a first pass: a network that compiles but cannot run fails here, not mid-map
    except Exception as err:
        raise RuntimeUnavailable(f"{runtime}: the conversion failed ({_one_line(err)})") from None
    logger.info("%s: backbone converted and compiled in %.1f s (%d threads)", runtime,
                time.perf_counter() - start, threads)

    def embed(patches):
        feats, logits = run(patches.detach().contiguous().numpy())
        return torch.from_numpy(feats), torch.from_numpy(logits)

    return embed
