"""Tumour annotations: polygons in level-0 pixel coordinates, their JSON and Camelyon16 ASAP XML forms.

JSON schema (the original's): ``{"positive": [{"name": str, "vertices": [[x, y], ...]}, ...], "negative": [...]}``
with integer level-0 (x, y) vertices, written with ``indent=1``. Polygons are implicitly closed (a repeated
first vertex is allowed). ``positive`` polygons are tumour; ``negative`` polygons are exclusions (non-tumour
holes inside tumour regions).

Inside tests are vectorised over many points with :func:`skimage.measure.points_in_poly` (an even-odd test that
counts points on an edge or vertex as inside).
"""

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.measure import points_in_poly

from wsi.errors import AnnotationError, AnnotationMissingError
from wsi.fileio import atomic_open

POSITIVE_GROUPS = ("Tumor", "_0", "_1")
NEGATIVE_GROUPS = ("_2", "Exclusion")


class Polygon:
    """A named closed polygon. ``vertices`` is an ``[N, 2]`` int64 array of level-0 (x, y)."""

    def __init__(self, name, vertices):
        self.name = str(name)
        self._vertices = np.asarray(vertices, dtype=np.int64).reshape(-1, 2)
        if len(self._vertices):
            self.bbox = (*self._vertices.min(axis=0), *self._vertices.max(axis=0))  # x0, y0, x1, y1
        else:
            self.bbox = (0, 0, -1, -1)

    def vertices(self):
        """A copy of the ``[N, 2]`` (x, y) vertex array."""
        return self._vertices.copy()

    def inside(self, points):
        """Boolean ``[M]``: whether each level-0 point ``[M, 2]`` (x, y) is inside (edges count as inside)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        result = np.zeros(len(points), dtype=bool)
        if len(self._vertices) < 3:
            return result
        x0, y0, x1, y1 = self.bbox
        near = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
        if near.any():
            result[near] = points_in_poly(points[near], self._vertices.astype(np.float64))
        return result

    def __len__(self):
        return len(self._vertices)

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"Polygon({self.name!r}, {len(self._vertices)} vertices)"


class Annotation:
    """The positive (tumour) and negative (exclusion) polygons of one slide."""

    def __init__(self, positive=(), negative=(), path=None):
        self.positive = list(positive)
        self.negative = list(negative)
        self.path = path

    @classmethod
    def from_json(cls, path):
        """Load the original's annotation JSON; raises :class:`AnnotationError` naming the file when malformed."""
        path = Path(path)
        try:
            with open(path) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise AnnotationError(f"{path}: no such annotation file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise AnnotationError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, path=path)

    @classmethod
    def from_dict(cls, data, path=None):
        where = path if path is not None else "annotation"
        if not isinstance(data, dict) or not {"positive", "negative"} <= set(data):
            raise AnnotationError(f"{where}: expected an object with 'positive' and 'negative' lists")
        groups = {}
        for key in ("positive", "negative"):
            polygons = []
            for i, entry in enumerate(data[key]):
                try:
                    vertices = np.asarray(entry["vertices"])
                    if vertices.ndim != 2 or vertices.shape[1] != 2 or not np.issubdtype(vertices.dtype, np.number):
                        raise ValueError
                    polygons.append(Polygon(entry.get("name", f"Annotation {i}"), vertices))
                except (KeyError, TypeError, ValueError):
                    raise AnnotationError(f"{where}: {key}[{i}] has no list of [x, y] vertices") from None
            groups[key] = polygons
        return cls(groups["positive"], groups["negative"], path=path)

    def to_dict(self):
        """The JSON form, keys in the original's order (positive, negative; name, vertices)."""
        return {
            key: [{"name": p.name, "vertices": p.vertices().tolist()} for p in polygons]
            for key, polygons in (("positive", self.positive), ("negative", self.negative))
        }

    def to_json(self, path):
        """Write the JSON with ``indent=1`` as the original, atomically."""
        with atomic_open(path, "w") as handle:
            json.dump(self.to_dict(), handle, indent=1)

    def polygon_vertices(self, is_positive=True):
        """List of ``[N, 2]`` vertex arrays of the positive (or negative) polygons."""
        return [p.vertices() for p in (self.positive if is_positive else self.negative)]

    def inside_polygons(self, points, is_positive=True):
        """Boolean ``[M]``: whether each (x, y) point is inside **any** positive (or negative) polygon.

        ``points`` is one (x, y) pair or an ``[M, 2]`` array; a single pair returns a bool.
        """
        points = np.asarray(points, dtype=np.float64)
        single = points.ndim == 1
        points = points.reshape(-1, 2)
        result = np.zeros(len(points), dtype=bool)
        for polygon in self.positive if is_positive else self.negative:
            todo = ~result
            if not todo.any():
                break
            result[todo] = polygon.inside(points[todo])
        return bool(result[0]) if single else result

    def tumour_label(self, points):
        """Boolean ``[M]``: inside a positive polygon and not inside a negative one (the Camelyon16 meaning)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return self.inside_polygons(points, True) & ~self.inside_polygons(points, False)

    def __repr__(self):
        return f"Annotation({len(self.positive)} positive, {len(self.negative)} negative)"


# ASAP / Camelyon16 XML ------------------------------------------------------------------------------------------

def read_camelyon16_xml(xml_path, warn=None):
    """Parse a Camelyon16 ASAP XML into an :class:`Annotation`.

    Groups ``Tumor``, ``_0``, ``_1`` become positive polygons (in that group order); ``_2`` and ``Exclusion``
    become negative ones (the original took only ``_2``). Coordinates are rounded half-to-even to int.
    Annotations of any other group are skipped and reported through ``warn(message)`` when given.
    """
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        raise AnnotationError(f"{xml_path}: no such XML file") from None
    except ET.ParseError as err:
        raise AnnotationError(f"{xml_path}: malformed XML ({err})") from None
    by_group = {}
    for element in root.iter("Annotation"):
        group = element.get("PartOfGroup", "None")
        name = element.get("Name", "")
        vertices = []
        for coordinate in element.iter("Coordinate"):
            try:
                x, y = float(coordinate.get("X")), float(coordinate.get("Y"))
            except (TypeError, ValueError):
                raise AnnotationError(
                    f"{xml_path}: annotation {name!r} has a non-numeric coordinate "
                    f"X={coordinate.get('X')!r} Y={coordinate.get('Y')!r}"
                ) from None
            if not (math.isfinite(x) and math.isfinite(y)):
                raise AnnotationError(f"{xml_path}: annotation {name!r} has a non-finite coordinate ({x}, {y})")
            vertices.append((x, y))
        vertices = np.round(np.asarray(vertices, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
        by_group.setdefault(group, []).append(Polygon(name, vertices))
    if not by_group:
        raise AnnotationError(f"{xml_path}: no annotations found")
    unknown = sorted(set(by_group) - set(POSITIVE_GROUPS) - set(NEGATIVE_GROUPS))
    if unknown and warn is not None:
        counts = ", ".join(f"{g!r} ({len(by_group[g])})" for g in unknown)
        warn(f"{xml_path}: skipped annotations of unknown group {counts}")
    positive = [p for g in POSITIVE_GROUPS for p in by_group.get(g, [])]
    negative = [p for g in NEGATIVE_GROUPS for p in by_group.get(g, [])]
    if not positive and not negative:
        raise AnnotationError(f"{xml_path}: no annotations in groups {POSITIVE_GROUPS + NEGATIVE_GROUPS}")
    return Annotation(positive, negative, path=xml_path)


def camelyon16xml2json(xml_path, json_path, warn=None):
    """Convert one Camelyon16 XML to the JSON schema; nothing is written when the XML is bad."""
    annotation = read_camelyon16_xml(xml_path, warn=warn)
    annotation.to_json(json_path)
    return annotation


def write_asap_xml(path, annotation=None, *, groups=None, color_positive="#F4FA58", color_negative="#64FE2E",
                   points=None):
    """Write polygons as ASAP XML that ASAP and :func:`read_camelyon16_xml` read.

    By default positive polygons go to group ``_0`` and negative ones to ``_2``. ``groups`` may instead be a
    list of (group_name, [Polygon, ...]) pairs. ``points`` optionally adds ``Dot`` annotations:
    a list of (name, x, y) in group ``detections``.
    """
    if groups is None:
        groups = [("_0", annotation.positive), ("_2", annotation.negative)]
    root = ET.Element("ASAP_Annotations")
    annotations = ET.SubElement(root, "Annotations")
    index = 0
    colors = {"_0": color_positive, "_1": color_positive, "Tumor": color_positive, "_2": color_negative}
    for group, polygons in groups:
        for polygon in polygons:
            element = ET.SubElement(annotations, "Annotation", Name=polygon.name, Type="Polygon",
                                    PartOfGroup=group, Color=colors.get(group, "#F4FA58"))
            coordinates = ET.SubElement(element, "Coordinates")
            for order, (x, y) in enumerate(polygon.vertices().tolist()):
                ET.SubElement(coordinates, "Coordinate", Order=str(order), X=str(x), Y=str(y))
            index += 1
    point_list = list(points or [])
    if point_list:
        for name, x, y in point_list:
            element = ET.SubElement(annotations, "Annotation", Name=str(name), Type="Dot",
                                    PartOfGroup="detections", Color="#0000FF")
            coordinates = ET.SubElement(element, "Coordinates")
            ET.SubElement(coordinates, "Coordinate", Order="0", X=str(x), Y=str(y))
    annotation_groups = ET.SubElement(root, "AnnotationGroups")
    names = [g for g, _ in groups] + (["detections"] if point_list else [])
    for group in dict.fromkeys(names):
        element = ET.SubElement(annotation_groups, "Group", Name=group, PartOfGroup="None",
                                Color=colors.get(group, "#0000FF"))
        ET.SubElement(element, "Attributes")
    ET.indent(root)
    with atomic_open(path, "wb") as handle:
        ET.ElementTree(root).write(handle, encoding="utf-8", xml_declaration=True)


def is_normal_name(pid):
    """Whether a slide's name says it is a normal slide (Camelyon16's ``Normal_*``)."""
    return pid.lower().startswith("normal")


def json_pids(json_dir):
    """The stems of the ``*.json`` files of an annotation folder, sorted."""
    json_dir = Path(json_dir)
    if not json_dir.is_dir():
        raise AnnotationError(f"{json_dir}: no such annotation folder")
    return sorted(p.stem for p in json_dir.glob("*.json"))


def load_annotations(json_dir, pids=None, *, assume_normal=False, what="slide"):
    """``{pid: Annotation}`` from an annotation folder ``<json_dir>/<pid>.json``; the pid is the file stem.

    Without ``pids``, every ``*.json`` in the folder. With ``pids``, those slides: a pid without a JSON gets an
    empty annotation (a normal slide) when its name says so (``Normal_*``) or ``assume_normal`` is set;
    otherwise :class:`AnnotationError` names the missing file(s).
    """
    json_dir = Path(json_dir)
    if pids is None:
        return {pid: Annotation.from_json(json_dir / f"{pid}.json") for pid in json_pids(json_dir)}
    if not json_dir.is_dir():
        raise AnnotationError(f"{json_dir}: no such annotation folder")
    annotations, missing = {}, []
    for pid in pids:
        path = json_dir / f"{pid}.json"
        if path.is_file():
            annotations[pid] = Annotation.from_json(path)
        elif assume_normal or is_normal_name(pid):
            annotations[pid] = Annotation(path=None)
        else:
            missing.append(pid)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise AnnotationMissingError(f"{json_dir / (missing[0] + '.json')}: no annotation for {what} "
                                     f"{missing[0]}{more}; only Normal_* slides may lack one (or pass "
                                     f"{{assume_normal}})")
    return annotations
