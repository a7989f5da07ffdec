#!/usr/bin/env python3
"""Convert Camelyon16 (ASAP) XML annotations to the NCRF annotation JSON.

Input: one XML file, or a folder of ``*.xml``. Output: one JSON file, or a folder receiving ``<stem>.json`` per
XML. Groups ``Tumor``, ``_0``, ``_1`` become ``positive`` polygons (in that group order), ``_2`` and
``Exclusion`` become ``negative`` ones; other groups are skipped with a warning naming them. Coordinates are
rounded half-to-even to integers (level 0, (x, y)); the JSON is written with ``indent=1``:
``{"positive": [{"name": str, "vertices": [[x, y], ...]}, ...], "negative": [...]}``.
A bad XML (malformed, no annotations, a non-numeric coordinate) writes nothing for that file; in folder mode
the good files are still converted, each bad one is reported on one line, and the exit status is 2.
"""
import sys
from pathlib import Path

import logging

from wsi.cli import ArgumentParser, check_outputs, run_command
from wsi.data.annotation import camelyon16xml2json
from wsi.errors import InputError, WSIError

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = ArgumentParser(description="Convert Camelyon16 xml format to internal json")
    parser.add_argument("xml_path", metavar="XML", type=str,
                        help="Path to the input Camelyon16 xml annotation, or a folder of *.xml")
    parser.add_argument("json_path", metavar="JSON", type=str,
                        help="Path to the output annotation in json format, or the output folder when XML is a "
                             "folder (or an existing folder: <JSON>/<stem>.json)")
    return parser


def convert_folder(xml_dir, json_dir):
    """Convert every ``*.xml`` of ``xml_dir`` into ``json_dir/<stem>.json``.

    Returns ``(converted, failed)``: lists of XML paths, and of ``(xml path, one-line error)``.
    """
    xml_dir, json_dir = Path(xml_dir), Path(json_dir)
    if json_dir.exists() and not json_dir.is_dir():
        raise InputError(f"{json_dir}: is a file; with a folder of XMLs, JSON must be a folder")
    check_outputs(folders=[json_dir])
    xmls = sorted(p for p in xml_dir.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
    if not xmls:
        raise InputError(f"{xml_dir}: no *.xml files in this folder")
    json_dir.mkdir(parents=True, exist_ok=True)
    converted, failed = [], []
    for xml in xmls:
        try:
            annotation = camelyon16xml2json(xml, json_dir / f"{xml.stem}.json", warn=logger.warning)
        except WSIError as err:
            failed.append((xml, str(err)))
            continue
        converted.append(xml)
        logger.info("%s -> %s: %d positive, %d negative", xml, json_dir / f"{xml.stem}.json",
                    len(annotation.positive), len(annotation.negative))
    return converted, failed


def run(args):
    xml_path, json_path = Path(args.xml_path), Path(args.json_path)
    if xml_path.is_dir():
        converted, failed = convert_folder(xml_path, json_path)
        for _, message in failed:
            print(f"camelyon16xml2json: error: {message}", file=sys.stderr)
        logger.info("converted %d of %d XML files into %s", len(converted), len(converted) + len(failed),
                    json_path)
        # One error line per bad XML (printed above), no summary error line: exit 2 when any failed.
        return 2 if failed else 0
    if json_path.is_dir():
        json_path = json_path / f"{xml_path.stem}.json"
    check_outputs(json_path, inputs=[xml_path])
    annotation = camelyon16xml2json(xml_path, json_path, warn=logger.warning)
    logger.info("%s -> %s: %d positive, %d negative", xml_path, json_path, len(annotation.positive),
                len(annotation.negative))


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
