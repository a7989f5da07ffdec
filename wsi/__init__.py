"""NCRF re-implementation: whole-slide tumour detection with a neural conditional random field.

Packages: ``wsi.data`` (slides, annotations, datasets), ``wsi.model`` (ResNet grid model and CRF),
``wsi.bin`` (one command-line script per pipeline stage).
"""

from wsi.errors import WSIError

__all__ = ["WSIError"]
__version__ = "1.0.0"
