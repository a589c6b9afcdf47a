#!/usr/bin/env python3
"""Converts MNIST-format IDX files (e.g. Debian's Fashion-MNIST) into the other data layouts dptrain
reads, for examples, tests and benchmarks:

  python scripts/data/make_datasets.py --format tensors    --out data/fm-tensors
  python scripts/data/make_datasets.py --format shards     --out data/fm-shards --shards 8
  python scripts/data/make_datasets.py --format imagefolder --out data/fm-png
  python scripts/data/make_datasets.py --format imagefolder --image-format jpg --out data/fm-jpg
  python scripts/data/make_datasets.py --format imagefolder --image-format jpg --size 224 --rgb --limit 2048 ...

  tensors      OUT/train.pt, OUT/test.pt: torch.save({"inputs": float32 [N, 1, H, W] in [0, 1],
               "targets": int64 [N]}) - the same values dptrain's IDX reader gives
  shards       OUT/train-00000.pt ... (contiguous slices of the training split, file order),
               OUT/shards.json ({"train": [samples per shard]}), OUT/test.pt
  imagefolder  OUT/train/<k>_<class name>/<index>.png (or .jpg), OUT/test/...: torchvision's
               ImageFolder layout; folders sort in label order

--limit N keeps the first N samples of each split; --size N resizes the images to N x N (bilinear)
and --rgb stores them as RGB (for decoding benchmarks of photo-sized JPEGs). Needs the venv's torch, numpy and Pillow (a
matplotlib dependency).
"""

import argparse
import gzip
import json
import os
import sys

import numpy as np

FASHION_CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle_boot"]


def read_idx(path):
    for candidate in (path + ".gz", path):
        if os.path.exists(candidate):
            opener = gzip.open if candidate.endswith(".gz") else open
            with opener(candidate, "rb") as f:
                data = f.read()
            dims = data[3]
            shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    sys.exit(f"make_datasets.py: error: {path}[.gz] not found")


def load_split(idx_dir, split, limit):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(idx_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(idx_dir, f"{prefix}-labels-idx1-ubyte"))
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def as_tensors(images, labels):
    import torch
    inputs = torch.from_numpy(images.copy()).unsqueeze(1).to(torch.float32).div_(255.0)
    return {"inputs": inputs, "targets": torch.from_numpy(labels.astype(np.int64))}


def write_imagefolder(out, split, images, labels, image_format, classes, size, rgb):
    from PIL import Image
    for k, name in enumerate(classes):
        os.makedirs(os.path.join(out, split, f"{k}_{name}"), exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        path = os.path.join(out, split, f"{label}_{classes[label]}", f"{i:05d}.{image_format}")
        picture = Image.fromarray(image, mode="L")
        if size:
            picture = picture.resize((size, size), Image.BILINEAR)
        if rgb:
            picture = picture.convert("RGB")
        if image_format == "jpg":
            picture.save(path, quality=90)
        else:
            picture.save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idx", default="/usr/share/datasets/fashion-mnist", help="directory of the IDX files")
    p.add_argument("--out", required=True)
    p.add_argument("--format", required=True, choices=["tensors", "shards", "imagefolder"])
    p.add_argument("--shards", type=int, default=4, help="shards of the training split (--format shards)")
    p.add_argument("--image-format", default="png", choices=["png", "jpg"])
    p.add_argument("--limit", type=int, default=0, help="keep the first N samples of each split (0: all)")
    p.add_argument("--size", type=int, default=0, help="imagefolder: resize to N x N (0: keep 28 x 28)")
    p.add_argument("--rgb", action="store_true", help="imagefolder: store RGB images")
    args = p.parse_args(argv)
    if args.shards < 1:
        p.error("--shards must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    splits = {split: load_split(args.idx, split, args.limit) for split in ("train", "test")}
    if args.format == "imagefolder":
        classes = FASHION_CLASSES if len(FASHION_CLASSES) > splits["train"][1].max() else \
            [str(k) for k in range(int(splits["train"][1].max()) + 1)]
        for split, (images, labels) in splits.items():
            write_imagefolder(args.out, split, images, labels, args.image_format, classes, args.size, args.rgb)
    else:
        import torch
        torch.save(as_tensors(*splits["test"]), os.path.join(args.out, "test.pt"))
        images, labels = splits["train"]
        if args.format == "tensors":
            torch.save(as_tensors(images, labels), os.path.join(args.out, "train.pt"))
        else:
            bounds = np.linspace(0, len(labels), args.shards + 1).astype(int)
            counts = []
            for i in range(args.shards):
                part = slice(bounds[i], bounds[i + 1])
                torch.save(as_tensors(images[part], labels[part]), os.path.join(args.out, f"train-{i:05d}.pt"))
                counts.append(int(bounds[i + 1] - bounds[i]))
            with open(os.path.join(args.out, "shards.json"), "w") as f:
                json.dump({"train": counts}, f)
    print(f"make_datasets.py: wrote {args.format} to {args.out}")


if __name__ == "__main__":
    main()
