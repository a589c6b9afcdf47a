# Hostile or careless inputs (issue 30): each is one error line naming what is wrong, before
# training where it can be, and a non-zero exit; never a hang, an abort or a silently wrong run.
# Data files are made here, in the test.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
small=(--data "$DATA" --limit-samples 128 --batch-size 16 --max-steps 2 --metrics "")

# Every error of this file is one line (the last line of the log; nothing after it).
one_line() {
  local name=$1
  [ "$(grep -c "error" "$name.log")" = 1 ] || { cat "$name.log"; fail "$name: expected one error line"; }
}

# --- config files ---------------------------------------------------------------------------
printf '[train]\nmodel = "mlp"\nlrr = 0.1\n' > unknown.toml
expect_error config_unknown_key 2 "unknown.toml:3: \[train\] lrr: unknown option" "$DPTRAIN" train --config unknown.toml "${small[@]}"
printf '[train]\nlr = [1, 2]\n' > array.toml
expect_error config_wrong_type 2 "array.toml:2: \[train\] lr takes one value: expected a number, got an array" \
  "$DPTRAIN" train --config array.toml "${small[@]}"
printf '[train]\nepochs = "three"\n' > string.toml
expect_error config_string_for_int 2 "string.toml:2: \[train\] epochs: expected an integer, got a string" \
  "$DPTRAIN" train --config string.toml "${small[@]}"
printf '[train]\nlr = 0.1\nlr = 0.2\n' > duplicate.toml
expect_error config_duplicate 2 "duplicate.toml:3: not a TOML file: .*lr" "$DPTRAIN" train --config duplicate.toml "${small[@]}"
printf '[train]\nlr = = 0.1\n' > syntax.toml
expect_error config_syntax 2 "syntax.toml:2: not a TOML file" "$DPTRAIN" train --config syntax.toml "${small[@]}"
head -c 2000 "$DPTRAIN" > binary.toml
expect_error config_binary 2 "binary.toml:[0-9]+: not a TOML file" "$DPTRAIN" train --config binary.toml "${small[@]}"
printf 'lr = 0.1\n' > toplevel.toml
expect_error config_top_level 2 "toplevel.toml:1: lr: unknown key at the top level" "$DPTRAIN" train --config toplevel.toml "${small[@]}"
printf '[train]\nno-eval = "yes"\n' > flag.toml
expect_error config_flag 2 "flag.toml:2: \[train\] no-eval is a flag: expected true or false" \
  "$DPTRAIN" train --config flag.toml "${small[@]}"
# A good file still works, and arrays reach options of several values.
printf '[train]\nmodel = "mlp"\nno-eval = true\nmax-steps = 3\n[eval]\nbatch-size = 7\n' > good.toml
expect_ok config_good "$DPTRAIN" train --config good.toml --data "$DATA" --limit-samples 128 --batch-size 16 --metrics ""
grep -q "dptrain train: 3 steps" config_good.log || { cat config_good.log; fail "config_good: max-steps 3 not applied"; }

# --- labels and the model's outputs ---------------------------------------------------------
"$DPTRAIN_PYTHON" - <<'PY'
import os, torch
x = torch.randn(64, 1, 28, 28)
def save(name, targets, test_targets=None, test_inputs=None):
    os.makedirs(name, exist_ok=True)
    torch.save({"inputs": x, "targets": targets}, f"{name}/train.pt")
    torch.save({"inputs": x if test_inputs is None else test_inputs,
                "targets": targets if test_targets is None else test_targets}, f"{name}/test.pt")
ok = torch.arange(64) % 10
save("negative", torch.where(torch.arange(64) == 17, -3, ok))
save("int32", ok.to(torch.int32))
save("big_label", torch.where(torch.arange(64) == 5, 200, ok))
save("test_beyond", ok, test_targets=torch.where(torch.arange(64) == 9, 12, ok))
save("test_shape", ok, test_inputs=torch.randn(64, 3, 32, 32))
os.makedirs("declared", exist_ok=True)
torch.save({"inputs": x, "targets": torch.where(torch.arange(64) == 5, 200, ok), "num_classes": 10}, "declared/train.pt")
os.makedirs("shard_shapes", exist_ok=True)
torch.save({"inputs": x, "targets": ok}, "shard_shapes/train-00000.pt")
torch.save({"inputs": torch.randn(64, 3, 32, 32), "targets": ok}, "shard_shapes/train-00001.pt")
torch.save({"inputs": x, "targets": ok}, "shard_shapes/test.pt")
# An integer of 2**31 or more beside the tensors (Python writes it as pickle's LONG1).
os.makedirs("bigint", exist_ok=True)
torch.save({"inputs": x, "targets": ok, "seen": 2**31 + 5, "negative": -2**40}, "bigint/train.pt")
os.makedirs("legacy", exist_ok=True)
torch.save({"inputs": x, "targets": ok}, "legacy/train.pt", _use_new_zipfile_serialization=False)
PY
expect_error label_negative 1 "negative/train.pt: class label -3 of sample 17 is negative" \
  "$DPTRAIN" train --model mlp --data negative --batch-size 16 --max-steps 2 --metrics ""
expect_error label_int32 1 "int32/train.pt: class labels of type Int; cross_entropy and nll take int64" \
  "$DPTRAIN" train --model mlp --data int32 --batch-size 16 --max-steps 2 --metrics ""
# The built-in model's outputs follow --num-classes: a label beyond them is an error, not an
# output layer of 201 classes.
expect_error label_beyond_classes 1 "C > 200 \(the largest label\)" \
  "$DPTRAIN" train --model mlp --num-classes 10 --data big_label --batch-size 16 --max-steps 2 --metrics ""
expect_error label_beyond_declared 1 "declared/train.pt: class label 200 of sample 5 is beyond the 10 classes the file declares" \
  "$DPTRAIN" train --model mlp --data declared --batch-size 16 --max-steps 2 --metrics "" --no-eval
# The test split is checked before training: a label the model has no output for, another shape.
expect_error test_label_beyond 1 "incompatible with the labels" \
  "$DPTRAIN" train --model mlp --data test_beyond --batch-size 16 --max-steps 2 --metrics "" --num-classes 10
grep -q "training:" test_label_beyond.log && fail "test_label_beyond: trained before finding the bad test label"
expect_error test_shape 1 "the model cannot take inputs of shape \[2, 3, 32, 32\]" \
  "$DPTRAIN" train --model mlp --data test_shape --batch-size 16 --max-steps 2 --metrics ""
grep -q "training:" test_shape.log && fail "test_shape: trained before finding the test split's shape"
one_line test_shape
expect_error shard_shape 1 "train-0000[01].pt: samples of .*, but .*train-0000[01].pt's are " \
  "$DPTRAIN" train --model mlp --data shard_shapes --batch-size 16 --max-steps 8 --metrics "" --no-eval
one_line shard_shape
expect_ok bigint "$DPTRAIN" train --model mlp --data bigint --batch-size 16 --max-steps 2 --metrics "" --no-eval
expect_error legacy_format 1 "legacy/train.pt is in torch.save's legacy format" \
  "$DPTRAIN" train --model mlp --data legacy --batch-size 16 --max-steps 2 --metrics "" --no-eval

# --- a model whose forward raises: one line, the model's own message ---------------------------
cat > raises.py <<'PY'
import torch
class Raises(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)
    def forward(self, x):
        if x.sum() > -1e30:
            raise ValueError("this model refuses every batch")
        return self.fc(x.flatten(1))
torch.jit.script(Raises()).save("raises.pt")
PY
"$DPTRAIN_PYTHON" raises.py
expect_error forward_raises 1 "this model refuses every batch" "$DPTRAIN" train --model raises.pt "${small[@]}"
one_line forward_raises

# --- non-regular files among the data: an error naming the file, never a hang -----------------
mkdir -p fifo_images/train/a fifo_images/train/b
"$DPTRAIN_PYTHON" -c "
from PIL import Image
for c in 'ab':
    for i in range(4): Image.new('L', (8, 8), 40 * i).save(f'fifo_images/train/{c}/{i}.png')
"
mkfifo fifo_images/train/b/9.png
expect_error fifo_image 1 "fifo_images/train/b/9.png: not a regular file" \
  "$DPTRAIN" train --model mlp --data fifo_images --batch-size 2 --max-steps 1 --metrics "" --no-eval
mkdir -p fifo_tensors && mkfifo fifo_tensors/train.pt
expect_error fifo_tensor_file 1 "fifo_tensors/train.pt: not a regular file" \
  "$DPTRAIN" train --model mlp --data fifo_tensors --batch-size 2 --max-steps 1 --metrics "" --no-eval
mkdir -p fifo_shards && cp bigint/train.pt fifo_shards/train-00000.pt && mkfifo fifo_shards/train-00001.pt
expect_error fifo_shard 1 "fifo_shards/train-00001.pt: not a regular file" \
  "$DPTRAIN" train --model mlp --data fifo_shards --batch-size 2 --max-steps 1 --metrics "" --no-eval

# --- images: mixed sizes, CMYK, decompression bombs ---------------------------------------------
"$DPTRAIN_PYTHON" - <<'PY'
import os, struct, zlib
from PIL import Image
def folder(name, images):
    for i, (cls, image, ext) in enumerate(images):
        os.makedirs(f"{name}/train/{cls}", exist_ok=True)
        image.save(f"{name}/train/{cls}/{i}.{ext}")
folder("mixed", [("a", Image.new("RGB", (8, 8)), "png"), ("b", Image.new("RGB", (8, 9)), "png")])
folder("cmyk", [("a", Image.new("RGB", (8, 8)), "png"), ("b", Image.new("CMYK", (8, 8), (0, 0, 0, 200)), "jpg")])
# A PNG header claiming 60000 x 60000 grey pixels (3.6 GB decoded) over a few bytes of data.
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
folder("bomb", [("a", Image.new("L", (8, 8)), "png"), ("b", Image.new("L", (8, 8)), "png")])
open("bomb/train/b/bomb.png", "wb").write(bomb)
PY
expect_error mixed_sizes 1 "is 8 x 9 but .* is 8 x 8: pass --image-size N" \
  "$DPTRAIN" train --model mlp --data mixed --batch-size 1 --max-steps 1 --metrics "" --no-eval
expect_error cmyk 1 "cmyk/train/b/1.jpg: a CMYK JPEG" \
  "$DPTRAIN" train --model mlp --data cmyk --image-size 8 --batch-size 2 --max-steps 1 --metrics "" --no-eval
expect_error bomb 1 "bomb.png: 60000 x 60000 pixels, more than --max-image-pixels" \
  "$DPTRAIN" train --model mlp --data bomb --batch-size 1 --max-steps 1 --metrics "" --no-eval
one_line bomb
expect_error bomb_resized 1 "bomb.png: 60000 x 60000 pixels, more than --max-image-pixels" \
  "$DPTRAIN" train --model mlp --data bomb --image-size 8 --batch-size 3 --max-steps 2 --metrics "" --no-eval --no-shuffle

# --- checkpoints with crafted fields -------------------------------------------------------------
expect_ok make_checkpoint "$DPTRAIN" train --model mlp "${small[@]}" --max-steps 4 --checkpoint-dir ckpt --no-eval
"$DPTRAIN_PYTHON" - <<'PY'
import glob, torch
path = sorted(glob.glob("ckpt/checkpoint-*.pt"))[-1]
def crafted(name, change):
    c = torch.load(path, weights_only=False)
    change(c)
    torch.save(c, name)
crafted("negative_step.pt", lambda c: c.__setitem__("step", -5))
crafted("negative_epoch.pt", lambda c: c.__setitem__("epoch", -1))
crafted("beyond_epochs.pt", lambda c: c.__setitem__("epoch", 7))
crafted("beyond_max_steps.pt", lambda c: c.__setitem__("step", 10**6))
def sampler_far(c):
    c["sampler"]["batch_in_epoch"] = 10**9
    c["step"] = 10**9 + 10
crafted("sampler_far.pt", sampler_far)
PY
resume=(train --model mlp "${small[@]}" --max-steps 20 --no-eval --resume)
expect_error ckpt_negative_step 1 "negative_step.pt: field 'step' is -5, expected >= 0" "$DPTRAIN" "${resume[@]}" negative_step.pt
expect_error ckpt_negative_epoch 1 "negative_epoch.pt: field 'epoch' is -1" "$DPTRAIN" "${resume[@]}" negative_epoch.pt
expect_error ckpt_beyond_epochs 2 "beyond_epochs.pt is at epoch 8, beyond --epochs 3" "$DPTRAIN" "${resume[@]}" beyond_epochs.pt
expect_error ckpt_beyond_max_steps 2 "beyond_max_steps.pt is at step 1000000, beyond --max-steps 20" \
  "$DPTRAIN" "${resume[@]}" beyond_max_steps.pt
expect_error ckpt_sampler_far 1 "sampler_far.pt: its sampler position .* is beyond" \
  "$DPTRAIN" train --model mlp "${small[@]}" --max-steps 0 --no-eval --resume sampler_far.pt

# --- numbers: overflow, huge epochs ---------------------------------------------------------------
expect_error batch_overflow 2 "overflows" \
  "$DPTRAIN" train --model mlp --data "$DATA" --batch-size 4611686018427387904 --accumulation-steps 4 --metrics ""
expect_error global_batch_overflow 2 "overflows" \
  "$MPIRUN" -np 2 "$DPTRAIN" train --model mlp --data "$DATA" --batch-size 4611686018427387904 --metrics ""
# 10^15 epochs with --max-steps: the plan counts 3 steps, not 10^15 epochs (LIMIT bounds the run).
expect_ok huge_epochs "$DPTRAIN" train --model mlp "${small[@]}" --epochs 1000000000000000 --max-steps 3 --no-eval
grep -q "dptrain train: 3 steps" huge_epochs.log || { cat huge_epochs.log; fail "huge_epochs did not stop at 3 steps"; }
expect_error timeout_huge 2 "--timeout must be between 0 and 1e9 seconds" "$DPTRAIN" train --timeout 1e300 "${small[@]}"

# --- messages that used to mislead ---------------------------------------------------------------
expect_error load_ops_dir 2 "--load-ops . is a directory: name the shared library itself" \
  "$DPTRAIN" train --model mlp "${small[@]}" --load-ops .
expect_error resume_dir 2 "--resume ckpt is a directory: pass --checkpoint-dir ckpt --resume latest" \
  "$DPTRAIN" train --model mlp "${small[@]}" --resume ckpt
expect_error stop_without_dir 2 "--stop-after-steps needs --checkpoint-dir" \
  "$DPTRAIN" train --model mlp "${small[@]}" --stop-after-steps 1

# --- a torchrun-style rank started without its peers: one line, no C++ frames --------------------
port=$("$DPTRAIN_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
expect_error torchrun_alone 3 "rendezvous at MASTER_ADDR=127.0.0.1 MASTER_PORT=$port failed" \
  env RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT="$port" \
  "$DPTRAIN" train --model mlp "${small[@]}" --timeout 3
lines=$(grep -vc "^$" torchrun_alone.log || true)
[ "$lines" -le 2 ] || { cat torchrun_alone.log; fail "torchrun_alone: $lines lines of output, expected the error alone"; }
echo "ok: a torchrun-style rank without peers: $lines line(s)"
