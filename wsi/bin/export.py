#!/usr/bin/env python3
"""Export results for viewers: a heatmap image, QuPath GeoJSON or ASAP XML.

Subcommands:

- ``heatmap PROBS_MAP OUT``: the ``[x, y]`` probability map ``.npy`` as an image (rows = y), over the slide's
  thumbnail with ``--wsi``, as a figure with a colour bar (``--plain``: the bare image, one pixel per cell).
- ``geojson OUT``: a QuPath-importable ``FeatureCollection`` in level-0 pixels: the detections of ``--csv``
  (``prob,x,y`` from ``nms.py``) as ``Point`` detections with their probability, and the tumour contours of
  the probability map ``--npy`` at ``--threshold`` as ``Polygon`` annotations (with holes), classified
  ``--name`` (default Tumor).
- ``xml OUT``: the same as ASAP XML: contours in group ``_0``, their holes in ``_2``, detections as Dots.
"""
import sys
from pathlib import Path


from wsi.arrays import cell_size, check_made_from, load_array, sidecar_path
from wsi.cli import ArgumentParser, check_outputs, int_in, level_index, probability, run_command
from wsi.errors import InputError


#: The highest --dpi: print resolution (the figure is 9.5 inches wide: 11400 pixels, about 4.5 GB to draw).
MAX_DPI = 1200
LEVEL_HELP = ("level of the probability map: its cells are 2**level level-0 pixels (the original's rule), default 6; "
              "a map with a sidecar (X.json beside X.npy) gives its own scale, and a --level that disagrees with it "
              "is refused")


def get_args_parser():
    parser = ArgumentParser(description="Export a probability map and detections for viewers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{heatmap,geojson,xml}")

    heatmap = commands.add_parser("heatmap", help="heatmap image of a probability map over the slide thumbnail")
    heatmap.add_argument("probs_map_path", metavar="PROBS_MAP", type=str, help="probability map .npy, [x, y]")
    heatmap.add_argument("out_path", metavar="OUT", type=str, help="output image (.png; .pdf/.svg for figures)")
    heatmap.add_argument("--wsi", default=None, type=str, metavar="SLIDE",
                         help="slide to draw under the map (its thumbnail); default none: the map alone")
    heatmap.add_argument("--level", default=None, type=level_index, help=LEVEL_HELP)
    heatmap.add_argument("--cmap", default="jet", type=str, help="matplotlib colour map, default jet")
    heatmap.add_argument("--alpha", default=0.5, type=probability,
                         help="opacity of the map over the slide (non-zero cells only), default 0.5")
    heatmap.add_argument("--plain", action="store_true",
                         help="write the bare image, one pixel per map cell, without axes or colour bar")
    heatmap.add_argument("--dpi", default=100, type=int_in(1, MAX_DPI),
                         help=f"figure resolution, 1 to {MAX_DPI}, default 100")

    for name, help_text, out_help in (
        ("geojson", "QuPath GeoJSON of detections (points) and tumour contours (polygons)", "output .geojson"),
        ("xml", "ASAP XML of detections (dots) and tumour contours (polygons)", "output .xml"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("out_path", metavar="OUT", type=str, help=out_help)
        sub.add_argument("--csv", default=None, type=str, metavar="DETECTIONS",
                         help="detections CSV from nms.py (prob,x,y at level 0); default none")
        sub.add_argument("--npy", default=None, type=str, metavar="PROBS_MAP",
                         help="probability map .npy ([x, y]) whose contours at --threshold are exported; "
                              "default none")
        sub.add_argument("--threshold", default=0.5, type=probability,
                         help="probability of the tumour contours, default 0.5")
        sub.add_argument("--level", default=None, type=level_index, help=LEVEL_HELP)
        if name == "geojson":
            sub.add_argument("--name", default="Tumor", type=str,
                             help="QuPath classification name of the objects, default Tumor")
    return parser


def check_slide_of(info, slide_path, map_path):
    """Refuse to draw a map over another slide than the one its sidecar names (no sidecar, no slide: no check)."""
    if info is not None and slide_path is not None:
        from wsi.data.slide import open_slide

        with open_slide(slide_path) as slide:
            check_made_from(info, slide, map_path)


def run(args):
    from wsi.eval import export
    from wsi.eval.detections import read_detections

    maps = [getattr(args, "probs_map_path", None) or getattr(args, "npy", None)]
    check_outputs(args.out_path, inputs=[*maps, *(sidecar_path(p) for p in maps if p), getattr(args, "wsi", None),
                                         getattr(args, "csv", None)])
    if args.command == "heatmap":
        probs_map, info = load_array(args.probs_map_path, "probability map")
        check_slide_of(info, args.wsi, args.probs_map_path)
        cell = cell_size(info, args.level, args.probs_map_path)
        export.write_heatmap(args.out_path, probs_map, slide_path=args.wsi, cell=cell, cmap=args.cmap,
                             alpha=args.alpha, plain=args.plain, dpi=args.dpi,
                             title=Path(args.wsi or args.probs_map_path).stem)
        return
    if args.csv is None and args.npy is None:
        raise InputError(f"{args.command}: give --csv DETECTIONS, --npy PROBS_MAP or both")
    detections = read_detections(args.csv) if args.csv else None
    regions = []
    if args.npy:
        probs_map, info = load_array(args.npy, "probability map")
        regions = export.tumour_contours(probs_map, args.threshold, cell_size(info, args.level, args.npy))
    if args.command == "geojson":
        features = []
        if detections is not None:
            features += export.detection_features(*detections, classification=args.name)
        features += export.contour_features(regions, classification=args.name, threshold=args.threshold)
        export.write_geojson(args.out_path, features)
    else:
        export.write_xml(args.out_path, regions, detections)


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
