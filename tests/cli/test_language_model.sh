# A language model end to end (issue 34), on a text every Debian machine ships (GPL-3, 35 KB):
#  (a) scripts/data/tokenize_text.py writes train.bin / val.bin / meta.json (byte level);
#  (b) `dptrain train --model gpt` at 2 ranks learns: the validation loss ends below the unigram
#      entropy of the validation text, which no model ignoring the context can beat (an untrained
#      one starts near ln 256 = 5.55); the log reports tokens/s and perplexity = exp(loss);
#  (c) the trained model is TorchScript that PyTorch runs, and its loss on val.bin there equals
#      what dptrain eval reports;
#  (d) --precision bf16 (autocast on the CPU) tracks fp32 over 10 epochs (a 10-epoch fp32 run: the
#      cosine schedule's length is the run's): it learns (its loss falls by
#      > 0.25), every epoch's validation loss within 0.4 of fp32's and the last within 0.25; not
#      bitwise equal (bf16 did compute); weights saved fp32. bf16's rounding depends on the CPU's
#      bf16 units: on an AMD EPYC without them (bf16 emulated, 5.7 s an epoch against 0.8 s in fp32)
#      10 epochs ended 0.19 apart, 0.28 at most; 30 epochs ended 0.064 apart;
#  (e) MFU: FLOPs per token as 6N + 12 L D T computed here from the saved model, and each step's
#      "mfu" = tokens/s per rank x FLOPs per token / --peak-tflops;
#  (f) `dptrain generate`: greedy decoding equals PyTorch's greedy loop on the saved model; sampling
#      is reproducible per --seed and differs across seeds; a text prompt continues as text;
#  (g) bad corpora and options: one line naming the file (exit 1) or the option (exit 2);
#  (h) a BPE corpus (tokenize_text.py --tokenizer bpe): lossless, trains, generate's ids decode to text.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
LIMIT=${DPTRAIN_CLI_TIMEOUT:-600}
"$DPTRAIN_PYTHON" "$DPTRAIN_SOURCE_DIR/scripts/data/tokenize_text.py" /usr/share/common-licenses/GPL-3 --out gpl \
  > tokenize.log || { cat tokenize.log; fail "tokenize_text.py"; }
echo "ok: $(cat tokenize.log)"
gpt=(--model gpt --data gpl --context 64 --gpt-layers 2 --gpt-dim 64 --gpt-heads 4 --batch-size 8
     --optimizer adamw --lr 3e-3 --warmup-steps 10 --log-every 20)

# --- (b) it learns ---------------------------------------------------------------------------------
expect_ok train "$MPIRUN" -np 2 "$DPTRAIN" train "${gpt[@]}" --epochs 30 --out gpt.pt --metrics lm.jsonl
grep -q "tokens/s" train.log || { cat train.log; fail "the log reports tokens/s"; }
grep -q "dptrain train: .* (token files)" train.log || grep -q "in gpl (token files)" train.log ||
  { cat train.log; fail "the log names the data kind"; }
"$DPTRAIN_PYTHON" - <<'PY' || fail "the validation loss"
import json, math
from collections import Counter
val = open("gpl/val.bin", "rb").read()[::2]  # uint16 little-endian byte ids: the low bytes
counts = Counter(val)
unigram = -sum(c / len(val) * math.log(c / len(val)) for c in counts.values())
records = [json.loads(l) for l in open("lm.jsonl")]
epochs = [r for r in records if r["type"] == "epoch"]
first, last = epochs[0], epochs[-1]
steps = [r for r in records if r["type"] == "step"]
assert all(r["tokens_per_s"] == r["samples_per_s"] * 64 for r in steps), "tokens/s = samples/s x context"
assert abs(last["test_perplexity"] - math.exp(last["test_loss"])) < 1e-9 * last["test_perplexity"]
print(f"ok: validation loss {first['test_loss']:.3f} after epoch 1 -> {last['test_loss']:.3f} after epoch "
      f"{last['epoch']} (perplexity {last['test_perplexity']:.2f}); the text's unigram entropy is {unigram:.3f}, "
      f"ln 256 = {math.log(256):.3f}")
assert last["test_loss"] < unigram - 0.2, "the model did not learn from the context"
PY

# --- (c) PyTorch runs the trained model and agrees on the validation loss ------------------------
expect_ok eval "$MPIRUN" -np 2 "$DPTRAIN" eval --model gpt.pt --data gpl --context 64
"$DPTRAIN_PYTHON" - "$(grep -o 'test loss [0-9.]*' eval.log | cut -d' ' -f3)" <<'PY' || fail "PyTorch's loss"
import sys
import numpy as np, torch, torch.nn.functional as F
model = torch.jit.load("gpt.pt").eval()
tokens = torch.from_numpy(np.fromfile("gpl/val.bin", dtype=np.uint16).astype(np.int64))
n = (len(tokens) - 1) // 64
x = torch.stack([tokens[i * 64:i * 64 + 64] for i in range(n)])
y = torch.stack([tokens[i * 64 + 1:i * 64 + 65] for i in range(n)])
with torch.no_grad():
    loss = F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1)).item()
ours = float(sys.argv[1])
assert abs(loss - ours) < 1e-3, (loss, ours)
print(f"ok: torch.jit.load('gpt.pt') scores val.bin at {loss:.4f}, dptrain eval said {ours:.4f}")
PY

# --- (d) bf16 ------------------------------------------------------------------------------------
expect_ok fp32_10 "$MPIRUN" -np 2 "$DPTRAIN" train "${gpt[@]}" --epochs 10 --metrics fp32-10.jsonl
expect_ok bf16 "$MPIRUN" -np 2 "$DPTRAIN" train "${gpt[@]}" --epochs 10 --precision bf16 --out gpt-bf16.pt \
  --metrics bf16.jsonl
"$DPTRAIN_PYTHON" - <<'PY' || fail "bf16 against fp32"
import json, torch
def losses(path):
    return [r["test_loss"] for r in map(json.loads, open(path)) if r["type"] == "epoch"]
fp32, bf16 = losses("fp32-10.jsonl"), losses("bf16.jsonl")
worst = max(abs(a - b) for a, b in zip(fp32, bf16))
final = abs(fp32[-1] - bf16[-1])
assert len(fp32) == len(bf16) == 10 and fp32 != bf16, (fp32, bf16)
assert bf16[0] - bf16[-1] > 0.25 and worst < 0.4 and final < 0.25, (bf16, worst, final)
dtypes = {t.dtype for t in torch.jit.load("gpt-bf16.pt").state_dict().values()}
assert dtypes == {torch.float32}, dtypes
print(f"ok: bf16 validation loss {bf16[0]:.4f} -> {bf16[-1]:.4f} over 10 epochs vs fp32 {fp32[-1]:.4f} "
      f"(largest gap {worst:.4f}); weights saved in fp32")
PY

# --- (e) MFU -------------------------------------------------------------------------------------
expect_ok mfu "$MPIRUN" -np 2 "$DPTRAIN" train "${gpt[@]}" --epochs 2 --peak-tflops 1 --metrics mfu.jsonl --no-eval
"$DPTRAIN_PYTHON" - "$(grep -o 'MFU: [0-9.e+]* FLOP per token' mfu.log | cut -d' ' -f2)" <<'PY' || fail "the MFU"
import json, sys, torch
state = torch.jit.load("gpt.pt").state_dict()
n = sum(t.numel() for k, t in state.items() if k != "wpe_weight")
flops = 6 * n + 12 * 2 * 64 * 64  # layers 2, width 64, context 64
said = float(sys.argv[1])
assert abs(said - flops) <= 1e-3 * flops, (said, flops)
steps = [r for r in map(json.loads, open("mfu.jsonl")) if r["type"] == "step"]
worst = max(abs(r["mfu"] - r["tokens_per_s"] / 2 * flops / 1e12) / r["mfu"] for r in steps)
assert worst < 1e-6, worst
print(f"ok: {flops} FLOP per token (6N + 12LDT, N = {n}); MFU per step = tokens/s per rank x that / 1 TFLOP/s "
      f"(last {steps[-1]['mfu']:.2e})")
PY

# --- (f) generate ---------------------------------------------------------------------------------
expect_ok greedy "$DPTRAIN" generate --model gpt.pt --prompt-tokens 84,104,105,115 --max-new-tokens 30 --temperature 0
"$DPTRAIN_PYTHON" - "$(tail -n 1 greedy.log)" <<'PY' || fail "greedy decoding"
import sys, torch
model = torch.jit.load("gpt.pt").eval()
ids = [84, 104, 105, 115]
with torch.no_grad():
    for _ in range(30):
        ids.append(int(model(torch.tensor([ids[-64:]]))[0, -1].argmax()))
ours = [int(t) for t in sys.argv[1].split(",")]
assert ours == ids, (ours, ids)
print("ok: dptrain generate --temperature 0 = PyTorch's greedy loop:", bytes(ids).decode(errors="replace"))
PY
sample() { "$DPTRAIN" generate --model gpt.pt --prompt "This License" --max-new-tokens 60 --temperature 0.8 \
  --top-k 40 --seed "$1" > "$2" || fail "generate --seed $1"; }
sample 1 a.txt; sample 1 b.txt; sample 2 c.txt
cmp -s a.txt b.txt || fail "the same --seed gives the same text"
! cmp -s a.txt c.txt || fail "another --seed gives another text"
grep -q "^This License" a.txt || fail "the text continues the prompt"
echo "ok: generate --seed 1 twice: the same text, --seed 2 another: $(head -c 80 a.txt | tr '\n' ' ')"
"$DPTRAIN_PYTHON" -c "
import torch
torch.jit.trace(torch.nn.Embedding(300, 100), torch.zeros(1, 3, dtype=torch.long)).save('vocab100.pt')"
expect_error prompt_vocab 2 "--prompt is byte-level text, and vocab100.pt has 100 token ids" \
  "$DPTRAIN" generate --model vocab100.pt --prompt "hi"

# --- (h) a BPE corpus: Hugging Face tokenizers trained on the text itself ------------------------
"$DPTRAIN_PYTHON" "$DPTRAIN_SOURCE_DIR/scripts/data/tokenize_text.py" /usr/share/common-licenses/GPL-3 --out bpe \
  --tokenizer bpe --vocab-size 512 > bpe.log || { cat bpe.log; fail "tokenize_text.py --tokenizer bpe"; }
"$DPTRAIN_PYTHON" - <<'PY' || fail "the BPE corpus"
import json
import numpy as np
from tokenizers import Tokenizer
meta = json.load(open("bpe/meta.json"))
assert meta == {"dtype": "uint16", "vocab_size": 512, "tokenizer": "bpe", "tokenizer_file": "tokenizer.json"}, meta
ids = np.concatenate([np.fromfile(f"bpe/{split}.bin", dtype=np.uint16) for split in ("train", "val")])
text = open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read()
assert Tokenizer.from_file("bpe/tokenizer.json").decode(ids.tolist()) == text, "train.bin + val.bin decode to the text"
assert ids.max() < 512 and len(ids) < len(text.encode()) / 2, (int(ids.max()), len(ids))
print(f"ok: BPE (vocab 512): {len(ids)} tokens for {len(text.encode())} bytes, decoded back to the text")
PY
expect_ok bpe_train "$MPIRUN" -np 2 "$DPTRAIN" train --model gpt --data bpe --context 32 --gpt-layers 1 --gpt-dim 32 \
  --gpt-heads 2 --batch-size 8 --epochs 2 --out bpe.pt
"$DPTRAIN_PYTHON" -c "
import torch
vocab = torch.jit.load('bpe.pt')(torch.zeros(1, 4, dtype=torch.long)).shape[-1]
assert vocab == 512, vocab" || fail "the GPT takes meta.json's vocab_size"
to_text=("$DPTRAIN_PYTHON" "$DPTRAIN_SOURCE_DIR/scripts/data/text_tokens.py")
prompt=$("${to_text[@]}" encode --data bpe "This License") || fail "text_tokens.py encode"
expect_ok bpe_generate "$DPTRAIN" generate --model bpe.pt --prompt-tokens "$prompt" --max-new-tokens 20 --seed 1
tail -n 1 bpe_generate.log | "${to_text[@]}" decode --data bpe - > bpe.txt || fail "text_tokens.py decode"
grep -q "^This License" bpe.txt || { cat bpe.txt; fail "the BPE ids decode to the prompt's continuation"; }
echo "ok: a GPT on the BPE corpus (vocab 512, from meta.json) generates ids that decode to text: $(head -c 80 bpe.txt | tr '\n' ' ')"
expect_error bpe_bad_ids 1 "token id 999 is outside \[0, 512\)" "${to_text[@]}" decode --data bpe 1,999

# --- (g) bad input ----------------------------------------------------------------------------------
mkdir -p odd short big
head -c 1001 gpl/train.bin > odd/train.bin
expect_error odd_size 1 "odd/train.bin: 1001 bytes is not a whole number of uint16 tokens" \
  "$DPTRAIN" train --model gpt --data odd --context 16 --epochs 1
head -c 40 gpl/train.bin > short/train.bin
expect_error short 1 "short/train.bin: 20 tokens, fewer than one window of --context 64" \
  "$DPTRAIN" train --model gpt --data short --context 64 --epochs 1
cp gpl/train.bin gpl/val.bin big/ && echo '{"dtype": "uint16", "vocab_size": 100}' > big/meta.json
expect_error beyond_vocab 1 "token id [0-9]+ at position [0-9]+ is outside \[0, 100\)" \
  "$DPTRAIN" train --model gpt --data big --context 32 --epochs 1 --no-eval
expect_error long_context 2 "--context 2048 is longer than gpt2-small's 1024 positions" \
  "$DPTRAIN" train --model gpt2-small --data gpl --context 2048 --epochs 1
expect_error gpt_on_images 2 "--model gpt takes windows of token ids" \
  "$DPTRAIN" train --model gpt --epochs 1 --limit-samples 64
