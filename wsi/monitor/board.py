"""The tensorboardX writer of ``train.py``: the original's four scalars as before, plus what a researcher watches.

Tags (steps are the global training step, as the original's):

==========================  =====================================================================  ===========
tag                         what                                                                   when
==========================  =====================================================================  ===========
``train/loss``, ``train/acc``  the original's (written by ``train.py`` itself)                      log_every
``valid/loss``, ``valid/acc``  the original's (written by ``train.py`` itself)                      validation
``train/lr``                the learning rate of the step                                          log_every
``speed/grids_per_s``       training grids per second over the steps since the last log (all       log_every
                            processes)
``speed/data_wait_share``   share of that time spent waiting for the loaders (rank 0)              log_every
``crf/W/{i}_to_{j}``        the raw CRF weight from grid cell i to cell j (row-major, i, j < G)    log_every
``crf/W`` (image)           W as ``plot_W.py`` draws it                                            validation
``train/grids`` (image)     the first grids of the epoch's first batch, as augmented, cells framed  epoch
                            red (tumour) / blue (normal)
``valid/pr_curve``          precision-recall of every validation cell                              validation
``valid/acc_centre``        accuracy of the centre cell (the one ``probs_map`` keeps)              validation
``valid/acc_border``        accuracy of the other cells (where the CRF's context matters most)     validation
``valid/best_loss``         the lowest validation loss so far (``best.ckpt``'s)                    validation
``slide/probs_map`` (image)  ``--tb_slide``: the region's probability map under the thumbnail       validation
``slide/preview_seconds``   what that map cost                                                     validation
``config`` (text)           the config and the run's options                                       start
hparams                     the config's scalars and the options, against the ``valid/*`` metrics  start
==========================  =====================================================================  ===========

Under torchrun only rank 0 writes; the validation PR curve and the centre/border accuracies are over rank 0's
share of the validation grids.
"""

import json
import logging
import struct
from pathlib import Path

import numpy as np
import torch
from tensorboardX import SummaryWriter
from tensorboardX.proto import event_pb2
from tensorboardX.summary import hparams

from wsi.model.checkpoint import unwrap_model
from wsi.model.crf_figure import crf_panels, render_w
from wsi.model.inference import inference_model
from wsi.monitor.images import grid_mosaic

logger = logging.getLogger(__name__)

#: The original NCRF's tags (and the skip counts ``train/skipped``, ``valid/skipped``, written only when grids
#: fail), which ``train.py`` writes itself at the original's steps.
ORIGINAL_TAGS = ("train/loss", "train/acc", "valid/loss", "valid/acc")
#: Metrics the HParams tab shows against the hparams (the last value of each scalar).
HPARAM_METRICS = ("valid/loss", "valid/acc", "valid/acc_centre", "valid/acc_border", "valid/best_loss")
#: Config keys that name files or folders: not hparams.
_PATH_KEYS = ("data_path_", "coords_", "wsi_path_", "json_path_")
#: Grids drawn in ``train/grids``.
SAMPLE_GRIDS = 4


def hparams_of(cfg, options):
    """The hparams of a run: the config's scalar settings (not its paths) and ``options`` (a dict of the
    command line's bools, numbers and strings)."""
    found = {key: value for key, value in cfg.items()
             if isinstance(value, (bool, int, float, str)) and not key.startswith(_PATH_KEYS)}
    found.update({key: value for key, value in options.items() if isinstance(value, (bool, int, float, str))})
    return found


class TrainingBoard(SummaryWriter):
    """A ``tensorboardX.SummaryWriter`` (``add_scalar`` etc. as usual) that also logs a training run's steps,
    validations and settings (the tags above).

    ``preview``: a :class:`~wsi.monitor.slide_preview.SlidePreview` drawn at each validation, or None.
    """

    def __init__(self, logdir, *, purge_step=None, preview=None):
        super().__init__(logdir, purge_step=purge_step)
        self.preview = preview
        self._window = np.zeros(3)  # grids, seconds waiting for data, seconds computing
        self._sampled_epoch = None

    def log_settings(self, cfg, options, step=0):
        """The config and the options as text, and the hparams session of this run (written at each start)."""
        text = "\n".join(["```json", json.dumps(cfg, indent=1), "```", "", "options:", "```json",
                          json.dumps(options, indent=1, default=str), "```"])
        self.add_text("config", text, step)
        experiment, session_start, _ = hparams(hparams_of(cfg, options), dict.fromkeys(HPARAM_METRICS, 0.0))
        self.file_writer.add_summary(experiment)
        self.file_writer.add_summary(session_start)
        self.add_custom_scalars({"CRF": {"W entries (raw)": ["Multiline", [r"crf/W/.*"]]},
                                 "Speed": {"grids/s": ["Multiline", [r"speed/grids_per_s"]],
                                           "data wait share": ["Multiline", [r"speed/data_wait_share"]]}})

    def log_step(self, step, log_every, *, epoch, model, lr, grids, wait, busy, batch=None):
        """After training step ``step``: count ``grids`` (all processes) and the seconds spent ``wait``-ing for data
        and ``busy`` computing; every ``log_every`` steps write the lr, the speed and W's entries. ``batch``
        ``(grids [N, G, 3, C, C], labels [N, G])``: drawn once per ``epoch``, the first time it is given."""
        self._window += (grids, wait, busy)
        if batch is not None and self._sampled_epoch != epoch:
            self._sampled_epoch = epoch
            data, target = batch
            self.add_image("train/grids", grid_mosaic(data[:SAMPLE_GRIDS], target[:SAMPLE_GRIDS]), step,
                           dataformats="HWC")
        if step % log_every:
            return
        self.add_scalar("train/lr", lr, step)
        count, waited, computed = self._window
        if waited + computed > 0:
            self.add_scalar("speed/grids_per_s", count / (waited + computed), step)
            self.add_scalar("speed/data_wait_share", waited / (waited + computed), step)
        self._window[:] = 0
        W = _crf_weights(model)
        if W is not None:
            for (i, j), value in np.ndenumerate(W[0]):
                self.add_scalar(f"crf/W/{i}_to_{j}", float(value), step)

    def log_validation(self, step, model, outputs, best_loss):
        """After a validation at ``step``: ``outputs`` a list of ``(probs [B, G], labels [B, G])`` of the validation
        batches; W's image and the ``--tb_slide`` map of ``model``."""
        if outputs:
            probs = torch.cat([p for p, _ in outputs]).float()
            labels = torch.cat([t for _, t in outputs]).float()
            self.add_pr_curve("valid/pr_curve", (labels >= 0.5).flatten(), probs.flatten(), step)
            correct = ((probs >= 0.5).float() == labels).float()
            centre = probs.shape[1] // 2
            self.add_scalar("valid/acc_centre", correct[:, centre].mean().item(), step)
            border = torch.cat([correct[:, :centre], correct[:, centre + 1:]], dim=1)
            if border.numel():
                self.add_scalar("valid/acc_border", border.mean().item(), step)
        self.add_scalar("valid/best_loss", best_loss, step)
        W = _crf_weights(model)
        if W is not None:
            self.add_image("crf/W", render_w(crf_panels(W)), step, dataformats="HWC")
        if self.preview is not None:
            net = inference_model(unwrap_model(model))  # an eval copy, as validation runs
            self.add_image("slide/probs_map", self.preview.image(self.preview.probs_map(net)), step,
                           dataformats="HWC")
            self.add_scalar("slide/preview_seconds", self.preview.seconds, step)
        self.flush()


def _crf_weights(model):
    """``crf.W`` ``[1, N, N]`` of ``model`` (unwrapped from DDP/DataParallel) on the CPU, or None without a CRF."""
    crf = getattr(unwrap_model(model), "crf", None)
    return None if crf is None else crf.W.detach().float().cpu()


def read_scalars(folder, keep=lambda tag: True):
    """``{tag: [(step, value), ...]}`` of the scalars whose tag ``keep`` accepts, from every event file in
    ``folder`` in file order (TFRecord framing: 8-byte length, 4-byte CRC, the event, 4-byte CRC)."""
    scalars = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        blob, pos = path.read_bytes(), 0
        while pos < len(blob):
            (length,) = struct.unpack("<Q", blob[pos:pos + 8])
            event = event_pb2.Event.FromString(blob[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                if keep(value.tag):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
