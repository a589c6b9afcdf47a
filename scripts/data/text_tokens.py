#!/usr/bin/env python3
"""Text <-> token ids with a corpus's own tokenizer (the DIR of tokenize_text.py: its meta.json,
and tokenizer.json for BPE), for `dptrain generate --prompt-tokens` and its output.

    python scripts/data/text_tokens.py encode --data data/bpe "Once upon a time"
    python scripts/data/text_tokens.py decode --data data/bpe 412,33,1020
    dptrain generate --model lm.pt --prompt-tokens "$(python scripts/data/text_tokens.py encode --data data/bpe 'Once')" \\
      | python scripts/data/text_tokens.py decode --data data/bpe -

encode prints comma-separated ids; decode takes them (or - for standard input) and prints the text.
"""
import argparse
import json
import os
import sys

NAME = "text_tokens.py"


class ByteTokenizer:
    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


class BpeTokenizer:
    def __init__(self, path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            sys.exit(f"{NAME}: a BPE corpus needs Hugging Face tokenizers (pip install tokenizers)")
        try:
            self.tokenizer = Tokenizer.from_file(path)
        except Exception as e:  # tokenizers raises its own exception types for a bad file
            sys.exit(f"{NAME}: {path}: not a tokenizers file ({e})")

    def encode(self, text):
        return self.tokenizer.encode(text).ids

    def decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def tokenizer_of(directory):
    meta_path = os.path.join(directory, "meta.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except OSError as e:
        sys.exit(f"{NAME}: {meta_path}: {e.strerror}")
    except json.JSONDecodeError as e:
        sys.exit(f"{NAME}: {meta_path}: not JSON ({e})")
    kind = meta.get("tokenizer", "byte")
    if kind == "byte":
        return ByteTokenizer(), meta.get("vocab_size", 256)
    if kind == "bpe":
        return BpeTokenizer(os.path.join(directory, meta.get("tokenizer_file", "tokenizer.json"))), meta.get("vocab_size")
    sys.exit(f"{NAME}: {meta_path}: tokenizer '{kind}' is not byte or bpe")


def parse_ids(text, vocab_size):
    try:
        ids = [int(part) for part in text.replace("\n", ",").split(",") if part.strip()]
    except ValueError:
        sys.exit(f"{NAME}: decode takes comma-separated token ids, got '{text[:40]}'")
    bad = [i for i in ids if i < 0 or (vocab_size and i >= vocab_size)]
    if bad:
        sys.exit(f"{NAME}: token id {bad[0]} is outside [0, {vocab_size}) of this corpus")
    return ids


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("direction", choices=("encode", "decode"))
    parser.add_argument("--data", required=True, help="the corpus directory (meta.json, tokenizer.json)")
    parser.add_argument("value", help="text to encode, or ids to decode; - reads standard input")
    args = parser.parse_args(argv)
    tokenizer, vocab_size = tokenizer_of(args.data)
    value = sys.stdin.read() if args.value == "-" else args.value
    if args.direction == "encode":
        print(",".join(str(i) for i in tokenizer.encode(value)))
    else:
        sys.stdout.write(tokenizer.decode(parse_ids(value, vocab_size)) + "\n")


if __name__ == "__main__":
    main()
