"""Constants that several stages share: one home each.

Numbers fixed by Camelyon16 or by the original NCRF; change them here, not in the stage that uses them.
"""

#: Suffixes of the slide files a folder of slides is searched for (every format OpenSlide reads).
SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")

#: Level of the original's tissue masks and probability maps (64 level-0 pixels per cell on a 2× pyramid), and
#: the ``--level`` default of the scripts that read them.
DEFAULT_MAP_LEVEL = 6

#: Level of the ground-truth masks that the Camelyon16 FROC reads.
EVALUATION_MASK_LEVEL = 5

#: µm per level-0 pixel of the Camelyon16 slides (the FROC's and the mask writer's default).
CAMELYON16_MPP = 0.243

#: The networks a config's ``"model"`` may name (:data:`wsi.model.MODELS`, in this order).
MODEL_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

#: How a grid cell's label is read from the annotation: inside a positive polygon (the original's training rule),
#: or inside a positive and outside every negative polygon.
LABEL_MODES = ("positive", "positive_not_negative")
DEFAULT_LABEL_MODE = "positive"

#: What runs the network in ``probs_map.py --runtime``: ``auto`` (OpenVINO on a CPU when installed, else torch),
#: PyTorch itself, or a CPU inference runtime (float32). See :mod:`wsi.model.runtime`.
RUNTIMES = ("auto", "torch", "openvino")
