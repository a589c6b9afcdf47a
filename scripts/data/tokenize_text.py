#!/usr/bin/env python3
"""Text files -> a token corpus for `dptrain train --data DIR` (nanoGPT's layout, no network):
DIR/train.bin and DIR/val.bin (flat arrays of token ids) and DIR/meta.json (dtype, vocab_size,
tokenizer).

    python scripts/data/tokenize_text.py /usr/share/common-licenses/GPL-3 --out data/gpl
    python scripts/data/tokenize_text.py book1.txt book2.txt --out data/books --val-fraction 0.05
    python scripts/data/tokenize_text.py book.txt --out data/bpe --tokenizer bpe --vocab-size 4096

Tokenizers:
  byte  each UTF-8 byte is its own id (256 ids): any text tokenizes, every id sequence decodes.
  bpe   a byte-level BPE trained on the corpus itself with Hugging Face `tokenizers` (GPT-2's
        scheme: no unknown tokens, lossless), saved as DIR/tokenizer.json; scripts/data/text_tokens.py
        turns text into ids and back with it.
The last --val-fraction of the corpus (at a token boundary) is the validation split.
"""
import argparse
import json
import os
import sys

import numpy as np

NAME = "tokenize_text.py"
ENCODE_CHUNK = 1 << 20  # characters per piece handed to the BPE encoder (cut after a newline)


def read_texts(paths):
    data = bytearray()
    for path in paths:
        try:
            with open(path, "rb") as f:
                data += f.read()
        except OSError as e:
            sys.exit(f"{NAME}: {path}: {e.strerror}")
    return bytes(data)


def pieces(text):
    """The text cut after newlines into pieces of about ENCODE_CHUNK characters (encoded in parallel)."""
    begin = 0
    while begin < len(text):
        end = text.find("\n", begin + ENCODE_CHUNK)
        end = len(text) if end < 0 else end + 1
        yield text[begin:end]
        begin = end


def bpe_tokens(data, vocab_size, out_dir):
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        sys.exit(f"{NAME}: --tokenizer bpe needs Hugging Face tokenizers (pip install tokenizers; "
                 "scripts/install-deps.sh installs it)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        sys.exit(f"{NAME}: the text is not UTF-8 (byte {e.start}): BPE needs text; --tokenizer byte takes any bytes")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    chunks = list(pieces(text))  # cut once: trained on, then encoded
    tokenizer.train_from_iterator(chunks, trainer=trainer)
    ids = [i for encoding in tokenizer.encode_batch(chunks) for i in encoding.ids]
    tmp = os.path.join(out_dir, "tokenizer.json.tmp")
    tokenizer.save(tmp)
    os.replace(tmp, os.path.join(out_dir, "tokenizer.json"))
    vocab = tokenizer.get_vocab_size()
    return np.asarray(ids, dtype=np.uint16 if vocab <= 1 << 16 else np.uint32), vocab


def write_atomically(path, write):
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)  # never half a file under the final name


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("text", nargs="+", help="UTF-8 text files, concatenated in this order")
    parser.add_argument("--out", required=True, help="directory to write train.bin, val.bin and meta.json to")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of the corpus for val.bin (0.1)")
    parser.add_argument("--tokenizer", choices=("byte", "bpe"), default="byte", help="byte (256 ids) or bpe")
    parser.add_argument("--vocab-size", type=int, default=4096,
                        help="bpe: the vocabulary to learn, 256 bytes included (4096); fewer if the text runs out of merges")
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        sys.exit(f"{NAME}: --val-fraction must be in (0, 1), got {args.val_fraction}")
    if args.tokenizer == "bpe" and not 256 < args.vocab_size <= 1 << 32:
        sys.exit(f"{NAME}: --vocab-size must be above 256 (the byte alphabet), got {args.vocab_size}")
    data = read_texts(args.text)
    if len(data) < 2:
        sys.exit(f"{NAME}: the text holds fewer than 2 bytes")
    os.makedirs(args.out, exist_ok=True)
    if args.tokenizer == "byte":
        tokens, vocab = np.frombuffer(data, dtype=np.uint8).astype(np.uint16), 256
        meta = {"dtype": "uint16", "vocab_size": vocab, "tokenizer": "byte"}
    else:
        tokens, vocab = bpe_tokens(data, args.vocab_size, args.out)
        meta = {"dtype": str(tokens.dtype), "vocab_size": vocab, "tokenizer": "bpe", "tokenizer_file": "tokenizer.json"}
    if len(tokens) < 2:
        sys.exit(f"{NAME}: the text makes fewer than 2 tokens")
    split = min(max(int(len(tokens) * (1 - args.val_fraction)), 1), len(tokens) - 1)
    for name, part in (("train.bin", tokens[:split]), ("val.bin", tokens[split:])):
        write_atomically(os.path.join(args.out, name), part.tofile)
    write_atomically(os.path.join(args.out, "meta.json"), lambda tmp: write_json(tmp, meta))
    print(f"{NAME}: {len(tokens)} tokens ({args.tokenizer}, vocab {vocab}, {len(data) / len(tokens):.2f} bytes per "
          f"token): {split} in {args.out}/train.bin, {len(tokens) - split} in {args.out}/val.bin")


if __name__ == "__main__":
    main()
