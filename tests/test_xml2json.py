"""The XML -> JSON converter script (wsi/bin/camelyon16xml2json.py) on real files."""

import json
import logging
import subprocess
import sys

import pytest

from tests.helpers import ROOT, call
from wsi.bin.camelyon16xml2json import main

CAMELYON16_XML = """<?xml version="1.0"?>
<ASAP_Annotations>
\t<Annotations>
\t\t<Annotation Name="_1 first" Type="Polygon" PartOfGroup="_1" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="10.5" Y="20.5" />
\t\t\t\t<Coordinate Order="1" X="11.5" Y="20.4999" />
\t\t\t\t<Coordinate Order="2" X="11.5000" Y="30.6" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="1e2" Y="200" />
\t\t\t\t<Coordinate Order="1" X="300.0" Y="200" />
\t\t\t\t<Coordinate Order="2" X="300" Y="400" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Exclusion7" Type="Polygon" PartOfGroup="Exclusion" Color="#64FE2E">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="150" Y="210" />
\t\t\t\t<Coordinate Order="1" X="160" Y="210" />
\t\t\t\t<Coordinate Order="2" X="160" Y="220" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Tumor A" Type="Spline" PartOfGroup="Tumor" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="-2.5" Y="-3.5" />
\t\t\t\t<Coordinate Order="1" X="5" Y="0" />
\t\t\t\t<Coordinate Order="2" X="5" Y="5" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="_10" Type="Polygon" PartOfGroup="_2" Color="#64FE2E">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="250" Y="250" />
\t\t\t\t<Coordinate Order="1" X="260" Y="250" />
\t\t\t\t<Coordinate Order="2" X="260" Y="260" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="stray" Type="Dot" PartOfGroup="Lymphocytes" Color="#0000FF">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="1" Y="1" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t</Annotations>
\t<AnnotationGroups>
\t\t<Group Name="_0" PartOfGroup="None" Color="#F4FA58"><Attributes /></Group>
\t</AnnotationGroups>
</ASAP_Annotations>
"""


@pytest.fixture
def xml_file(tmp_path):
    path = tmp_path / "Tumor_001.xml"
    path.write_text(CAMELYON16_XML)
    return path


def test_groups_order_rounding_and_format(xml_file, tmp_path, caplog):
    out = tmp_path / "Tumor_001.json"
    with caplog.at_level(logging.WARNING):
        assert main([str(xml_file), str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["positive", "negative"]
    # Positive in group order Tumor, _0, _1 (not file order); negative: _2 then Exclusion.
    assert [p["name"] for p in data["positive"]] == ["Tumor A", "Annotation 0", "_1 first"]
    assert [p["name"] for p in data["negative"]] == ["_10", "Exclusion7"]
    # np.round: half to even; 1e2 and 300.0 are numbers too.
    assert data["positive"][0]["vertices"] == [[-2, -4], [5, 0], [5, 5]]
    assert data["positive"][1]["vertices"] == [[100, 200], [300, 200], [300, 400]]
    assert data["positive"][2]["vertices"] == [[10, 20], [12, 20], [12, 31]]
    assert out.read_text() == json.dumps(data, indent=1)
    # The unknown group is named in a warning.
    assert any("Lymphocytes" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_json_into_an_existing_folder(xml_file, tmp_path):
    folder = tmp_path / "jsons"
    folder.mkdir()
    assert main([str(xml_file), str(folder)]) == 0
    assert json.loads((folder / "Tumor_001.json").read_text())["negative"][0]["name"] == "_10"


BAD_XMLS = {
    "malformed": ("<ASAP_Annotations><Annotations><Annotation>", "malformed XML"),
    "empty": ("<ASAP_Annotations><Annotations></Annotations></ASAP_Annotations>", "no annotations found"),
    "unknown_only": ('<ASAP_Annotations><Annotations><Annotation Name="a" PartOfGroup="Other"><Coordinates>'
                     '<Coordinate Order="0" X="1" Y="2"/></Coordinates></Annotation></Annotations>'
                     '</ASAP_Annotations>', "no annotations in groups"),
    "non_numeric": ('<ASAP_Annotations><Annotations><Annotation Name="a" PartOfGroup="_0"><Coordinates>'
                    '<Coordinate Order="0" X="1,5" Y="2"/></Coordinates></Annotation></Annotations>'
                    '</ASAP_Annotations>', "non-numeric coordinate X='1,5'"),
    "missing_y": ('<ASAP_Annotations><Annotations><Annotation Name="a" PartOfGroup="_0"><Coordinates>'
                  '<Coordinate Order="0" X="1"/></Coordinates></Annotation></Annotations>'
                  '</ASAP_Annotations>', "non-numeric coordinate"),
    "nan": ('<ASAP_Annotations><Annotations><Annotation Name="a" PartOfGroup="_0"><Coordinates>'
            '<Coordinate Order="0" X="nan" Y="2"/></Coordinates></Annotation></Annotations>'
            '</ASAP_Annotations>', "non-finite coordinate"),
}


@pytest.mark.parametrize("kind", sorted(BAD_XMLS))
def test_bad_xml_one_line_error_exit_2_no_output(tmp_path, capsys, kind):
    content, message = BAD_XMLS[kind]
    xml = tmp_path / f"{kind}.xml"
    xml.write_text(content)
    out = tmp_path / "out.json"
    assert main([str(xml), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("camelyon16xml2json: error: ") and message in err and str(xml) in err
    assert "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [xml.name]


def test_missing_xml(tmp_path, capsys):
    assert main([str(tmp_path / "nope.xml"), str(tmp_path / "out.json")]) == 2
    assert "nope.xml: no such XML file" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_folder_mode_converts_good_reports_bad_exits_2(tmp_path, capsys):
    xml_dir, json_dir = tmp_path / "xml", tmp_path / "json"
    xml_dir.mkdir()
    (xml_dir / "Tumor_001.xml").write_text(CAMELYON16_XML)
    (xml_dir / "Tumor_002.xml").write_text(CAMELYON16_XML.replace('X="10.5"', 'X="ten"'))
    (xml_dir / "Tumor_003.xml").write_text(CAMELYON16_XML)
    (xml_dir / "readme.txt").write_text("not an xml")
    assert main([str(xml_dir), str(json_dir)]) == 2
    assert sorted(p.name for p in json_dir.iterdir()) == ["Tumor_001.json", "Tumor_003.json"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1  # one error line per bad XML (issue 12: no second, summary error line)
    assert "Tumor_002.xml" in err[0] and "non-numeric coordinate X='ten'" in err[0]


def test_folder_mode_all_good_exit_0(tmp_path):
    xml_dir, json_dir = tmp_path / "xml", tmp_path / "a" / "json"
    xml_dir.mkdir()
    for i in (1, 2):
        (xml_dir / f"Tumor_00{i}.xml").write_text(CAMELYON16_XML)
    assert main([str(xml_dir), str(json_dir)]) == 0
    assert sorted(p.name for p in json_dir.iterdir()) == ["Tumor_001.json", "Tumor_002.json"]


def test_folder_mode_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), str(tmp_path / "out")]) == 2
    assert "no *.xml files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (empty / "a.xml").write_text(CAMELYON16_XML)
    target = tmp_path / "file.json"
    target.write_text("{}")
    assert main([str(empty), str(target)]) == 2
    assert "JSON must be a folder" in capsys.readouterr().err
    assert target.read_text() == "{}"


def test_runs_as_a_script(xml_file, tmp_path):
    """`python wsi/bin/camelyon16xml2json.py XML JSON` from another working directory."""
    out = tmp_path / "script.json"
    result = subprocess.run([sys.executable, str(ROOT / "wsi" / "bin" / "camelyon16xml2json.py"), str(xml_file),
                             str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(out.read_text())["positive"]) == 3
    bad = subprocess.run([sys.executable, "-m", "wsi.bin.camelyon16xml2json", str(tmp_path / "none.xml"),
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"camelyon16xml2json: error: {tmp_path / 'none.xml'}: no such XML file"]


# A fault case moved from tests/test_faults.py (the world is conftest.py's ``world``) ----------------------------------
def test_xml_folder_mode_prints_one_line_per_bad_xml(world, tmp_path, capsys):
    xml_dir = tmp_path / "xml"
    xml_dir.mkdir()
    good = (world / "xml" / "Tumor_001.xml").read_bytes()
    (xml_dir / "Tumor_001.xml").write_bytes(good)
    (xml_dir / "Tumor_002.xml").write_bytes(good[:len(good) // 2])
    (xml_dir / "Tumor_003.xml").write_bytes(b"")
    status, err = call(main, [xml_dir, tmp_path / "json"], capsys)
    assert status == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if " error: " in line]
    assert len(lines) == 2 and "Tumor_002.xml" in lines[0] and "Tumor_003.xml" in lines[1]
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == ["Tumor_001.json"]
