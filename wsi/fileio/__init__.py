"""Files: outputs written atomically, ``.npy`` headers, UTF-8 text lines, figure formats, file digests.

One concern per module, every name re-exported here (``from wsi.fileio import atomic_open`` as before):

- :mod:`~wsi.fileio.atomic`: outputs appear complete or not at all (temporary + rename), stale temporaries of
  interrupted runs, and the checks every script runs on its outputs before any work.
- :mod:`~wsi.fileio.npy`: ``.npy`` names, atomic saves, shape and dtype from the header (complete or not).
- :mod:`~wsi.fileio.text`: the lines of a UTF-8 text file.
- :mod:`~wsi.fileio.figures`: the format of a figure file.
- :mod:`~wsi.fileio.digest`: the SHA-256 of a file.
"""

from wsi.fileio.atomic import (atomic_open, atomic_path, check_not_inputs, check_writable, remove_stale_temporaries,
                               same_file)
from wsi.fileio.digest import file_digest
from wsi.fileio.figures import figure_format
from wsi.fileio.npy import is_complete_npy, npy_header, npy_path, save_npy
from wsi.fileio.text import read_text_lines

__all__ = ["atomic_open", "atomic_path", "check_not_inputs", "check_writable", "figure_format", "file_digest",
           "is_complete_npy", "npy_header", "npy_path", "read_text_lines", "remove_stale_temporaries", "same_file",
           "save_npy"]
