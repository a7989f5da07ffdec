#!/usr/bin/env python3
"""Sample the training coordinate lists: random grid centres in tissue, labelled by the annotations.

The first step of the original author's recipe (its code was never released). Input: a folder of slides
(``<pid>.tif`` or another OpenSlide format), a folder of annotation JSONs (``<pid>.json``; the slides sampled are
those JSONs unless ``--pids`` says otherwise) and, optionally, a folder of tissue masks (``<pid>.npy``, boolean
``[x, y]`` arrays as ``tissue_mask.py`` writes them, any level; computed on the fly when not given). Output, in
OUT_PATH: ``tumor_<name>.txt`` and ``normal_<name>.txt`` (and ``tumor_valid.txt``/``normal_valid.txt`` with a
validation split) in the coords format: ``<pid>,<x>,<y>`` per line, integer level-0 grid centres, shuffled, no
header. Tumour centres lie in tissue inside a positive polygon and outside every negative one; normal centres lie
in tissue outside every positive polygon (optionally ``--margin`` away), on normal slides and in the non-tumour
tissue of tumour slides. Nothing is written unless every slide succeeds.
"""
import sys


from tqdm import tqdm

from wsi.cli import ArgumentParser, channel_value, check_outputs, count, level_index, probability, run_command
from wsi.data.sampling import sample_coords


def get_args_parser():
    parser = ArgumentParser(
        description="Sample tumour and normal grid centres (level-0 pid,x,y lists) from slides, their tissue "
                    "masks and annotation JSONs.")
    parser.add_argument("wsi_path", metavar="WSI_PATH", type=str, help="folder of the slides, <pid>.tif")
    parser.add_argument("json_path", metavar="JSON_PATH", type=str,
                        help="folder of the annotation JSONs, <pid>.json; its JSONs are the slides sampled "
                             "unless --pids is given")
    parser.add_argument("out_path", metavar="OUT_PATH", type=str,
                        help="output folder of tumor_<name>.txt and normal_<name>.txt")
    parser.add_argument("--mask_path", default=None, type=str,
                        help="folder of tissue masks <pid>.npy ([x, y] bool, any level), default: none, "
                             "computed on the fly at --level")
    parser.add_argument("--level", default=6, type=level_index,
                        help="level of the tissue masks computed on the fly, default 6")
    parser.add_argument("--rgb_min", default=50, type=channel_value,
                        help="RGB_min of the tissue masks computed on the fly, default 50")
    parser.add_argument("--pids", nargs="+", default=None, metavar="PID",
                        help="slides to sample, default: every JSON in JSON_PATH. A slide without a JSON is "
                             "normal if its name starts with Normal (or with --assume_normal)")
    parser.add_argument("--assume_normal", action="store_true",
                        help="treat every slide without an annotation JSON as normal, default: only Normal_*")
    counts = parser.add_mutually_exclusive_group()
    counts.add_argument("--num_tumor", default=None, type=count,
                        help="tumour centres in all, spread evenly over the tumour slides, default: "
                             "--tumor_per_slide each")
    counts.add_argument("--tumor_per_slide", default=2000, type=count,
                        help="tumour centres per tumour slide, default 2000 (the shipped lists' count)")
    normals = parser.add_mutually_exclusive_group()
    normals.add_argument("--num_normal", default=None, type=count,
                         help="normal centres in all, spread evenly over all slides (tumour slides included), "
                              "default: as many as tumour centres in all (--tumor_per_slide per slide when no "
                              "slide has tumour)")
    normals.add_argument("--normal_per_slide", default=None, type=count,
                         help="normal centres per slide, default: see --num_normal")
    parser.add_argument("--margin", default=0, type=count,
                        help="minimum distance of a normal centre from a positive polygon, level-0 pixels, "
                             "default 0")
    parser.add_argument("--min_tissue", default=0.0, type=probability,
                        help="minimum tissue fraction of the 768x768 grid around a centre, default 0 (no test)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--valid_fraction", default=0.0, type=probability,
                       help="fraction of the tumour slides and of the normal slides moved to the *_valid.txt "
                            "lists, drawn with --seed, default 0 (no split)")
    split.add_argument("--valid_pids", nargs="+", default=None, metavar="PID",
                       help="slides for the *_valid.txt lists, default: none")
    parser.add_argument("--name", default="train", type=str,
                        help="name of the lists: tumor_<name>.txt, normal_<name>.txt, default train")
    parser.add_argument("--seed", default=0, type=count, help="random seed, default 0")
    return parser


def run(args):
    check_outputs(folders=[args.out_path])
    sample_coords(args.wsi_path, args.json_path, args.out_path, mask_path=args.mask_path, pids=args.pids,
                  level=args.level, rgb_min=args.rgb_min, num_tumor=args.num_tumor,
                  tumor_per_slide=args.tumor_per_slide, num_normal=args.num_normal,
                  normal_per_slide=args.normal_per_slide, seed=args.seed, margin=args.margin,
                  min_tissue=args.min_tissue, valid_fraction=args.valid_fraction, valid_pids=args.valid_pids,
                  name=args.name, assume_normal=args.assume_normal,
                  progress=lambda pids: tqdm(pids, desc="slides", unit="slide"))


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
