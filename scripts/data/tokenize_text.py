#!/usr/bin/env python3
"""Text files -> a token corpus for `dptrain train --data DIR` (nanoGPT's layout, no network):
DIR/train.bin and DIR/val.bin (flat arrays of token ids) and DIR/meta.json (dtype, vocab_size,
tokenizer).

    python scripts/data/tokenize_text.py /usr/share/common-licenses/GPL-3 --out data/gpl
    python scripts/data/tokenize_text.py book1.txt book2.txt --out data/books --val-fraction 0.05

The tokenizer is byte level: each UTF-8 byte is its own id (256 ids), so any text tokenizes and
every id sequence decodes back to bytes. The last
--val-fraction of the corpus (at a byte boundary) is the validation split.
"""
import argparse
import json
import os
import sys

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", nargs="+", help="UTF-8 text files, concatenated in this order")
    parser.add_argument("--out", required=True, help="directory to write train.bin, val.bin and meta.json to")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of the corpus for val.bin (0.1)")
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        sys.exit(f"tokenize_text.py: --val-fraction must be in (0, 1), got {args.val_fraction}")
    data = bytearray()
    for path in args.text:
        try:
            with open(path, "rb") as f:
                data += f.read()
        except OSError as e:
            sys.exit(f"tokenize_text.py: {path}: {e.strerror}")
    if len(data) < 2:
        sys.exit("tokenize_text.py: the text holds fewer than 2 bytes")
    tokens = np.frombuffer(bytes(data), dtype=np.uint8).astype(np.uint16)
    split = int(len(tokens) * (1 - args.val_fraction))
    os.makedirs(args.out, exist_ok=True)
    for name, part in (("train.bin", tokens[:split]), ("val.bin", tokens[split:])):
        tmp = os.path.join(args.out, name + ".tmp")
        part.tofile(tmp)
        os.replace(tmp, os.path.join(args.out, name))  # never half a corpus under the final name
    meta = {"dtype": "uint16", "vocab_size": 256, "tokenizer": "byte"}
    with open(os.path.join(args.out, "meta.json.tmp"), "w") as f:
        json.dump(meta, f)
    os.replace(os.path.join(args.out, "meta.json.tmp"), os.path.join(args.out, "meta.json"))
    print(f"tokenize_text.py: {len(tokens)} tokens (byte level, vocab 256): {split} in {args.out}/train.bin, "
          f"{len(tokens) - split} in {args.out}/val.bin")


if __name__ == "__main__":
    main()
