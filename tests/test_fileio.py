"""wsi/fileio: one concern per module (atomic outputs, .npy headers, UTF-8 lines, figure formats, digests), every
name still importable from wsi.fileio."""

import hashlib

import numpy as np
import pytest

import wsi.fileio
from wsi.errors import InputError, OutputError
from wsi.fileio.atomic import atomic_open, check_not_inputs
from wsi.fileio.digest import file_digest
from wsi.fileio.figures import figure_format
from wsi.fileio.npy import is_complete_npy, npy_header, npy_path, save_npy
from wsi.fileio.text import read_text_lines


def test_the_package_re_exports_every_module_name():
    for name in wsi.fileio.__all__:
        assert getattr(wsi.fileio, name).__module__.startswith("wsi.fileio.")


def test_an_atomic_output_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_open(out) as handle:
            handle.write("half")
            raise RuntimeError("stopped")
    assert not out.exists() and list((tmp_path / "sub").iterdir()) == []
    with atomic_open(out) as handle:
        handle.write("whole")
    assert out.read_text() == "whole" and [p.name for p in (tmp_path / "sub").iterdir()] == ["out.txt"]
    with pytest.raises(OutputError, match="an output never replaces an input"):
        check_not_inputs([tmp_path / "sub" / ".." / "sub" / "out.txt"], [out])


def test_npy_headers_tell_a_complete_map(tmp_path):
    path = save_npy(tmp_path / "map", np.zeros((3, 4)))
    assert path == npy_path(tmp_path / "map") == tmp_path / "map.npy"
    assert npy_header(path) == ((3, 4), np.dtype("float64"))
    assert is_complete_npy(path, (3, 4), "float64") and not is_complete_npy(path, (4, 3), "float64")
    path.write_bytes(path.read_bytes()[:-1])  # cut short
    assert npy_header(path) is None and not is_complete_npy(path, (3, 4), "float64")
    (tmp_path / "text.npy").write_text("not an array")
    assert npy_header(tmp_path / "text.npy") is None


def test_text_lines_name_the_line_of_a_non_utf8_byte(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("a,1,2\nbé,3,4\n".encode())
    assert read_text_lines(path) == ["a,1,2\n", "bé,3,4\n"]
    path.write_bytes(b"a,1,2\nb\xff,3,4\n")
    with pytest.raises(InputError, match=r"list.txt: line 2: not UTF-8 text \(byte 0xff\)"):
        read_text_lines(path)


def test_figure_formats_by_suffix(tmp_path):
    assert figure_format(tmp_path / "froc.pdf") == "pdf" and figure_format(tmp_path / "froc") == "png"
    with pytest.raises(InputError, match="cannot save a figure as 'docx'"):
        figure_format(tmp_path / "froc.docx")


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"ncrf")
    assert file_digest(tmp_path / "a.bin") == hashlib.sha256(b"ncrf").hexdigest()
