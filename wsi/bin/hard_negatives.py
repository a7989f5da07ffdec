#!/usr/bin/env python3
"""Add hard negatives to a normal coordinate list: where a trained model's probability map is high but the
annotation says normal.

The second step of the original author's recipe, done once (its code was never released). Input: a folder of
probability maps of training slides (``<pid>.npy``, float ``[x, y]`` arrays at ``--level`` as ``probs_map.py``
writes them), the folder of their annotation JSONs, optionally their tissue masks (``<pid>.npy``, boolean
``[x, y]``, the maps' shape), and the normal list to extend. The slide is cut into cells of ``--stride`` level-0
pixels; a cell is a hard negative when its most probable map pixel is at or above ``--threshold``, its centre
``(i·stride + stride/2, j·stride + stride/2)`` lies in tissue and outside every positive polygon (at least
``--margin`` away). At most ``--max_per_slide`` per slide, highest probability first. Output: the normal list
(coords format ``<pid>,<x>,<y>``, level 0) with the new centres not already in it, rewritten atomically and
shuffled (``--no_shuffle`` appends them at the end instead).
"""
import sys
from pathlib import Path


from tqdm import tqdm

from wsi.cli import ArgumentParser, check_outputs, count, level_index, positive, probability, run_command
from wsi.data.hard_negatives import HARD_STRIDE, add_hard_negatives


def get_args_parser():
    parser = ArgumentParser(
        description="Add the false positives of probability maps of training slides (hard negatives) to a "
                    "normal coordinate list.")
    parser.add_argument("probs_map_path", metavar="PROBS_MAP_PATH", type=str,
                        help="folder of probability maps <pid>.npy ([x, y] at --level)")
    parser.add_argument("json_path", metavar="JSON_PATH", type=str, help="folder of the annotation JSONs <pid>.json")
    parser.add_argument("normal_path", metavar="NORMAL_PATH", type=str,
                        help="normal coordinate list to extend (created when missing)")
    parser.add_argument("--output", default=None, type=str,
                        help="write the extended list here instead of rewriting NORMAL_PATH, default: none")
    parser.add_argument("--mask_path", default=None, type=str,
                        help="folder of tissue masks <pid>.npy (the maps' shape); centres must lie in tissue. "
                             "Default: none (probs_map.py's maps are 0 outside tissue anyway)")
    parser.add_argument("--pids", nargs="+", default=None, metavar="PID",
                        help="slides to use, default: every map in PROBS_MAP_PATH")
    parser.add_argument("--assume_normal", action="store_true",
                        help="treat every slide without an annotation JSON as normal, default: only Normal_*")
    parser.add_argument("--level", default=None, type=level_index,
                        help="level of the maps: a map pixel is 2**level level-0 pixels (the original's rule), "
                             "default 6; maps with a sidecar (X.json) give their own scale, and a --level that "
                             "disagrees with it is refused")
    parser.add_argument("--stride", default=HARD_STRIDE, type=positive,
                        help=f"cell size in level-0 pixels, a multiple of the map's pixel, default {HARD_STRIDE}: the "
                             f"shipped lists' hard negatives sit at (128·i + 64, 128·j + 64)")
    parser.add_argument("--threshold", default=0.5, type=probability,
                        help="minimum probability of a hard negative, default 0.5")
    parser.add_argument("--margin", default=0, type=count,
                        help="minimum distance from a positive polygon, level-0 pixels, default 0")
    parser.add_argument("--max_per_slide", default=2000, type=count,
                        help="at most this many per slide, highest probability first, default 2000")
    parser.add_argument("--max_total", default=None, type=count,
                        help="at most this many in all, highest probability first, default: no limit")
    parser.add_argument("--no_shuffle", action="store_true",
                        help="append the new centres at the end instead of shuffling the list; training reads "
                             "the list in file order, so appended centres may go unseen. Default: shuffle")
    parser.add_argument("--seed", default=0, type=count, help="seed of the shuffle, default 0")
    return parser


def run(args):
    inputs = [*Path(args.probs_map_path).glob("*.npy"), *Path(args.probs_map_path).glob("*.json"),
              *Path(args.json_path).glob("*.json"), *(Path(args.mask_path).glob("*") if args.mask_path else ())]
    check_outputs(args.output or args.normal_path, inputs=inputs)  # NORMAL_PATH is extended in place by design
    add_hard_negatives(args.probs_map_path, args.json_path, args.normal_path, output_path=args.output,
                       mask_path=args.mask_path, pids=args.pids, level=args.level, stride=args.stride,
                       threshold=args.threshold, margin=args.margin, max_per_slide=args.max_per_slide,
                       max_total=args.max_total, seed=args.seed, shuffle=not args.no_shuffle,
                       assume_normal=args.assume_normal,
                       progress=lambda pids: tqdm(pids, desc="maps", unit="slide"))


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
