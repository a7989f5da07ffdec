#!/usr/bin/env python3
"""Probability map of a slide: the tumour probability of every tissue position of its tissue mask.

Inputs: the slide (WSI), a checkpoint (CKPT) and its training config (CFG), and the slide's tissue mask (MASK),
a bool ``[x, y]`` ``.npy`` array (first axis x) of the size of one of the slide's levels, as ``tissue_mask.py``
writes it. Output (NPY): a float64 ``[x, y]`` array of the mask's shape holding, at each tissue position, the
sigmoid of the centre patch's (CRF) logit of the ``image_size``² grid centred there, and 0 elsewhere; regions
past the slide border read as black. View it with ``plt.imshow(np.load(NPY).T)``. The default ``--mode fast``
runs every patch through the network once and gives the map of the original's algorithm (``--mode faithful``)
to within 1e-5. WSI may also be a folder of slides or a ``.txt`` list of slide paths; MASK is then the folder of
masks ``<stem>.npy`` and NPY the output folder (one ``<stem>.npy`` per slide; existing maps are skipped), and
``--shard K/N`` or torchrun's ``RANK``/``WORLD_SIZE`` split the slides between processes.
"""
import sys
from pathlib import Path

import logging
import os

from wsi.cli import ArgumentParser, add_trust_checkpoint, count, positive, run_command
from wsi.constants import RUNTIMES

logger = logging.getLogger(__name__)


def get_args_parser():
    parser = ArgumentParser(
        description="Get the probability map of a slide (or of a folder of slides) from its tissue mask.")
    parser.add_argument("wsi_path", metavar="WSI", type=str,
                        help="the slide; or a folder of slides, or a .txt file listing slide paths")
    parser.add_argument("ckpt_path", metavar="CKPT", type=str, help="checkpoint of the trained model")
    parser.add_argument("cfg_path", metavar="CFG", type=str, help="config JSON the model was trained with")
    parser.add_argument("mask_path", metavar="MASK", type=str,
                        help="tissue mask .npy ([x, y] bool); with many slides, the folder of <stem>.npy masks")
    parser.add_argument("probs_map_path", metavar="NPY", type=str,
                        help="output probability map .npy ([x, y] float64; .npy appended when missing); with "
                             "many slides, the output folder")
    parser.add_argument("--GPU", default=None, type=str,
                        help="when given, written to CUDA_VISIBLE_DEVICES (the original always wrote it, default "
                             "'0'); default: leave the environment alone")
    parser.add_argument("--num_workers", default=5, type=count,
                        help="number of workers reading the slide, default 5: DataLoader processes in the faithful "
                             "mode, threads reading blocks ahead of the network in the fast mode (0: read in the "
                             "main thread)")
    parser.add_argument("--eight_avg", default=0, type=int,
                        help="if not 0, average the 8 flips/rotations of every grid, default 0")
    parser.add_argument("--mode", default="fast", choices=("fast", "faithful"),
                        help="fast: each patch through the network once (default); faithful: the original's "
                             "algorithm, every grid's 9 crops per position. Same map within 1e-5; fast falls back "
                             "to faithful (with a log line) when the stride does not divide patch_size")
    parser.add_argument("--batch_size", default=None, type=positive,
                        help="grids per forward pass, default the config's batch_size x 2 (20); the fast mode "
                             "runs as many crops (batch_size x 9 patches) per pass, except on the CPU without this "
                             "option: 32 patches, which oneDNN runs faster")
    parser.add_argument("--device", default=None, type=str,
                        help="torch device, default cuda (cuda:LOCAL_RANK under torchrun) when a GPU is present, "
                             "else cpu")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision for the backbone: bfloat16 on the CPU and on GPUs that support it, "
                             "float16 on older GPUs; off by default (the map then differs slightly from the "
                             "float32 one)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the backbone (the compile time is logged; worth it for many slides)")
    parser.add_argument("--eager_cnn", action="store_true",
                        help="run the network as loaded: no BatchNorm folding, no channels_last, no OpenVINO (by "
                             "default the folded network, the same map within 1e-5, ~1.5-1.8x faster on a CPU)")
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES,
                        help="what runs the network: auto (default) = OpenVINO on a CPU when installed (float32, "
                             "the same map within 1e-5, ~1.2x PyTorch's pass there), else torch; torch or "
                             "openvino by name (openvino: on the CPU, float32, without --amp, --compile or "
                             "--eager_cnn)")
    parser.add_argument("--tf32", action="store_true",
                        help="allow TF32 on CUDA (faster on Ampere and later; the map then differs from the "
                             "float32 one by more than 1e-5); default off")
    parser.add_argument("--threads", default=None, type=positive,
                        help="torch intra-op threads, default torch's (one per core)")
    parser.add_argument("--shard", default=None, type=str, metavar="K/N",
                        help="with many slides, compute only shard K of N (K from 0; slides sorted by name, "
                             "every N-th from the K-th); default torchrun's RANK/WORLD_SIZE, else all")
    parser.add_argument("--overwrite", action="store_true",
                        help="with many slides, recompute maps that exist (default: skip them)")
    add_trust_checkpoint(parser)
    return parser


def run(args):
    if args.GPU is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.GPU  # before torch touches CUDA, as the original
    from wsi.inference.runner import run_probs_maps
    from wsi.inference.shards import parse_shard

    shard = parse_shard(args.shard) if args.shard is not None else None
    written = run_probs_maps(args.wsi_path, args.ckpt_path, args.cfg_path, args.mask_path, args.probs_map_path,
                   mode=args.mode, device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
                   eight_avg=bool(args.eight_avg), amp=args.amp, shard=shard,
                   skip_existing=False if args.overwrite else None, optimize=not args.eager_cnn,
                   compile=args.compile, tf32=args.tf32, threads=args.threads, runtime=args.runtime,
                   trust_checkpoint=args.trust_checkpoint)
    if written.failed:
        logger.warning("%d slide(s) with regions that could not be read: %s", len(written.failed),
                       ", ".join(Path(slide).name for slide, _ in written.failed))
        return 1
    return 0


def main(argv=None):
    return run_command(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
