#!/usr/bin/env python3
"""How far the device augmentation path is from the per-item PIL path, measured on the same items and draws.

Reads ``--grids`` grid regions at random centres of the real H&E fixture through ``dataset_from_config`` (the
datasets ``train.py`` builds), once as per-item grids (``--augment cpu``: PIL jitter, flip, rotation, crops) and
once as raw regions augmented in batches by :func:`wsi.data.grid_augment.augment_grids` on ``--device``
(``--augment device``), both unscaled (grey levels 0..255), and prints whether the labels are identical and the
largest and mean absolute grey-level difference of the crops.

    python bench/augment_agreement.py --grids 300                  # demo size on the CPU
    python bench/augment_agreement.py --size paper --grids 100 --device cuda
"""
from pathlib import Path

import argparse
import json
import tempfile

import torch

from bench.train_throughput import SIZES, config, make_data
from wsi.data.grid_augment import augment_grids
from wsi.data.image_producer import dataset_from_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="demo")
    parser.add_argument("--grids", type=int, default=300, help="grids compared, default 300")
    parser.add_argument("--batch_size", type=int, default=10, help="grids augmented together, default 10")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of draws per grid, default 2")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = SIZES[args.size]
    per_epoch = -(-args.grids // args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, sizes[0], per_epoch, seed=1)
        cfg = config(root, sizes, args.batch_size, on_the_fly=True)
        per_item = dataset_from_config(cfg, "tumor_train", seed=5, normalize=False)
        raw = dataset_from_config(cfg, "tumor_train", seed=5, raw=True)
        largest, total, differing, values, grids, labels_equal = 0.0, 0.0, 0, 0, 0, True
        for epoch in range(args.epochs):
            per_item.set_epoch(epoch)
            raw.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(raw, batch_size=args.batch_size)
            for batch, ((images, draws), labels) in enumerate(loader):
                got = augment_grids(images.to(device), draws, sizes[1], sizes[2], normalize=False).cpu()
                start = batch * args.batch_size
                expected = [per_item[i] for i in range(start, start + len(images))]
                labels_equal &= torch.equal(labels, torch.stack([lab for _, lab in expected]))
                difference = (got - torch.stack([g for g, _ in expected])).abs()
                largest = max(largest, float(difference.max()))
                total += float(difference.sum())
                differing += int((difference > 0).sum())
                values += difference.numel()
                grids += len(images)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"device": name, "sizes": sizes, "grids": grids, "labels_identical": labels_equal,
              "max_grey_diff": largest, "mean_grey_diff": total / values, "share_differing": differing / values}
    print(f"{grids} grids at {sizes[0]}/{sizes[1]}/{sizes[2]} on {name}: labels "
          f"{'identical' if labels_equal else 'DIFFER'}; grey levels differ by at most {largest:g}, "
          f"{total / values:.2e} on average ({100 * differing / values:.3f} % of the values differ)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
