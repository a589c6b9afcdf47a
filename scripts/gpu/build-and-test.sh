#!/usr/bin/env bash
# One command on a GPU machine (PyTorch 2.11 CUDA in its python3, CUDA toolkit, no network; see
# docs/gpu.md): unpacks .gpu-deps/ into a private prefix (never into /), builds dptrain against the
# system torch and the NCCL that torch loads, then runs the phases below, each timed and logged.
# Results go to $OUT (or ./gpu-results): summary.txt (one line per phase: status and seconds) and
# gpu-results.tar.gz (every log, JSON result and trace).
#
#   bash scripts/gpu/build-and-test.sh                       # every phase
#   DPTRAIN_GPU_PHASES="build tests" bash scripts/gpu/build-and-test.sh
#
#   DPTRAIN_GPU_DEADLINE=470 bash scripts/gpu/build-and-test.sh  # stop starting phases after 470 s
#
# Phases (in this order; `build` is implied by the others):
#   build   configure + build the GPU targets with -j$(nproc)
#   tests   gpu_tests at world 1 (NCCL) and their CUDA tests at world 2 over MPI (one GPU: NCCL
#           refuses two ranks on one device); the communicator, DDP and Trainer suites of mpi_tests
#           on CUDA tensors: NCCL at world 1, MPI at world 2
#   train   dptrain train on the GPU: Fashion-MNIST CNN to >= 90% test accuracy (NCCL, world 1),
#           2 ranks over MPI on one GPU then a resume of it on NCCL, AMP, ResNet-18 steps, eval/infer
#   export  a conv+BN training step exported on the GPU (CUDA .pt2) trained by dptrain there, equal to
#           PyTorch on the GPU (tests/gpu/export_device_check.py)
#   lm      a GPT in bf16 on the GPU: tokens/s and MFU of dptrain (built-in and scripted) beside
#           PyTorch's eager DDP, world 1 (benchmarks/lm_bench.py)
#   bench   benchmarks/run_suite.py --gpu (NCCL all-reduce, DDP vs plain vs PyTorch DDP, trace)
# DPTRAIN_GPU_DATA: Fashion-MNIST IDX directory (default: .gpu-data/fashion-mnist, else the
# Debian package's /usr/share/datasets/fashion-mnist).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:-$root/gpu-results}
logs=$out/logs
mkdir -p "$logs"
phases=${DPTRAIN_GPU_PHASES:-build tests train export lm bench}
summary=$out/summary.txt
: >"$summary"
overall=0

note() { echo "$*" | tee -a "$summary"; }
# run_phase NAME COMMAND...: runs, logs to logs/NAME.log, notes status and seconds.
# Each phase is bounded by ${limit:-180} s and by the whole run's DPTRAIN_GPU_DEADLINE (seconds
# from the start), so a hang costs one phase and the results still come back.
deadline=${DPTRAIN_GPU_DEADLINE:-470}
run_phase() {
  local name=$1; shift
  local start=$SECONDS
  local left=$((deadline - SECONDS)) cap=${limit:-180}
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -le 5 ]; then note "$(printf '%-28s SKIPPED (deadline)' "$name")"; overall=1; return 1; fi
  echo "=== $name: $*" >>"$logs/$name.log"
  timeout -k 5 "$cap" "$@" >>"$logs/$name.log" 2>&1
  local rc=$?
  note "$(printf '%-28s %s  %4ds' "$name" "$([ $rc = 0 ] && echo PASS || echo "FAIL($rc)")" $((SECONDS - start)))"
  [ $rc = 0 ] || { overall=1; tail -25 "$logs/$name.log"; }
  return $rc
}
wants() { [[ " $phases " == *" $1 "* ]]; }
# Everything but the summary goes into one tarball (the device tool returns a few files only).
pack() {
  tar -czf "$out/gpu-results.tar.gz" -C "$out" logs $(cd "$out" && ls -d bench 2>/dev/null) 2>/dev/null &&
    rm -rf "$out/logs" "$out/bench"
  cat "$summary"
}
trap pack EXIT

# --- the Debian packages the machine lacks, relocated into a private prefix -----------------------
P=${DPTRAIN_DEPS_PREFIX:-/opt/dpt-deps}
mkdir -p "$P"
for f in "$root"/.gpu-deps/*.deb; do dpkg -x "$f" "$P"; done
# zlib1g-dev's libz.so points at a libz.so.1 the machine has but the prefix lacks (else the link
# takes the non-PIC libz.a).
for z in /usr/lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1; do
  [ -e "$z" ] && { ln -sf "$z" "$P/usr/lib/x86_64-linux-gnu/libz.so"; break; }
done
rm -f "$P/usr/lib/x86_64-linux-gnu/libz.a"
export OPAL_PREFIX=$P/usr   # a relocated OpenMPI finds its plugins through this
export LD_LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openmpi/lib:${LD_LIBRARY_PATH:-}
export PATH=$P/usr/bin:$PATH
ln -sf "$P/usr/bin/mpiexec.openmpi" "$P/usr/bin/mpirun" 2>/dev/null
export OMPI_MCA_plm_rsh_agent=false   # one node: never look for ssh
export PMIX_MCA_pcompress_base_silence_warning=1  # the relocated PMIx lacks its zlib plugin
export PMIX_MCA_mca_base_component_path=$P/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix  # not /usr/lib/...
python=${DPTRAIN_PYTHON:-python3}
export DPTRAIN_PYTHON=$(command -v "$python")
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0), "nccl", torch.cuda.nccl.version())'
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  echo "cores $(nproc)"
} 2>&1 | tee -a "$summary"

build=$root/build-gpu
export DPTRAIN_BUILD=$build
configure_and_build() {
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDPTRAIN_PYTHON="$DPTRAIN_PYTHON" \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$P/usr" -DCMAKE_LIBRARY_PATH="$P/usr/lib/x86_64-linux-gnu" \
    -DDPTRAIN_PROTOC="$P/usr/bin/protoc" -DDPTRAIN_WITH_CUDA=ON -DDPTRAIN_WITH_NCCL=ON \
    -DMPI_C_COMPILER=$P/usr/bin/mpicc.openmpi -DMPI_CXX_COMPILER=$P/usr/bin/mpicxx.openmpi \
    -DDPTRAIN_BUILD_EXAMPLES=OFF -DZLIB_LIBRARY="$P/usr/lib/x86_64-linux-gnu/libz.so" \
    -DZLIB_LIBRARY_RELEASE="$P/usr/lib/x86_64-linux-gnu/libz.so" &&
  cmake --build "$build" -j "$(nproc)" --target dptrain_cli gpu_tests mpi_tests ddp_bench allreduce_bench
}
export -f configure_and_build; export root build torch_prefix P
limit=420 run_phase build bash -c configure_and_build || exit 1

mpirun_np() { local np=$1; shift; "$root/scripts/dpt-mpirun" -np "$np" "$@"; }
export -f mpirun_np; export root
w2_filter='*_CUDA:-NcclCommunicator.*'  # NCCL: one rank per GPU
# The communicator, DDP and Trainer suites of mpi_tests on the GPU: every tensor on the
# communicator's device, checked against CPU references (see tests/support/test_support.h).
suites='Comm*:Ddp*:OptimizerOverlap*:Trainer*:ShardedOptimizer*:PowerSgd*:HierarchicalAllreduce*:-CommFailureDrill*'
if wants tests; then
  run_phase gpu_tests_nccl_w1 "$build/tests/gpu_tests"
  DPTRAIN_BACKEND=mpi run_phase gpu_tests_mpi_w2 bash -c 'mpirun_np "$@"' _ 2 "$build/tests/gpu_tests" --gtest_filter="$w2_filter"
  DPTRAIN_BACKEND=nccl DPTRAIN_DEVICE=cuda run_phase mpi_suites_nccl_cuda_w1 "$build/tests/mpi_tests" --gtest_filter="$suites"
  DPTRAIN_BACKEND=mpi DPTRAIN_DEVICE=cuda run_phase mpi_suites_mpi_cuda_w2 bash -c 'mpirun_np "$@"' _ 2 \
    "$build/tests/mpi_tests" --gtest_filter="$suites"
fi

data=${DPTRAIN_GPU_DATA:-}
[ -z "$data" ] && [ -d "$root/.gpu-data/fashion-mnist" ] && data=$root/.gpu-data/fashion-mnist
[ -z "$data" ] && data=/usr/share/datasets/fashion-mnist
if wants train; then
  t=$out/logs/train; mkdir -p "$t"
  run_phase train_cnn_nccl_w1 "$build/bin/dptrain" train --data "$data" --model cnn --epochs 5 --batch-size 64 \
    --metrics "$t/cnn_nccl.jsonl" --out "$t/cnn.pt" --checkpoint-dir "$t/ckpt"
  grep '"test_accuracy"' "$t/cnn_nccl.jsonl" | tail -1 | tee -a "$summary"
  "$python" -c "import json,sys; r=[json.loads(l) for l in open('$t/cnn_nccl.jsonl') if 'test_accuracy' in l][-1]; \
sys.exit(0 if r['test_accuracy'] >= 0.90 else 1)" || { note "cnn accuracy below 90%"; overall=1; }
  # 2 ranks on one GPU over MPI: the trainer's own collectives (loss, evaluation, checkpoints) on
  # CUDA tensors, gradients through PowerSGD (its worker thread on the training's CUDA stream) in
  # buckets sized by --bucket-cap auto (gradient timing with the stream synchronized, the cost
  # curve of CUDA all-reduces), then a resume of that run at world size 1 over NCCL.
  DPTRAIN_BACKEND=mpi run_phase train_cnn_mpi_w2 bash -c 'mpirun_np "$@"' _ 2 "$build/bin/dptrain" train \
    --data "$data" --model cnn --epochs 1 --batch-size 32 --comm-hook powersgd --powersgd-rank 2 --bucket-cap auto \
    --metrics "$t/cnn_mpi.jsonl" --checkpoint-dir "$t/ckpt_mpi"
  # The optimizer stepped bucket by bucket inside backward, on CUDA tensors (2 ranks on one GPU).
  DPTRAIN_BACKEND=mpi run_phase train_cnn_overlap_optimizer_mpi_w2 bash -c 'mpirun_np "$@"' _ 2 "$build/bin/dptrain" \
    train --data "$data" --model cnn --max-steps 200 --batch-size 32 --optimizer adamw --lr 1e-3 \
    --overlap-optimizer --metrics "$t/cnn_overlap.jsonl"
  grep '"test_accuracy"' "$t/cnn_overlap.jsonl" | tail -1 | tee -a "$summary"
  run_phase train_cnn_resume_nccl_w1 "$build/bin/dptrain" train --data "$data" --model cnn --epochs 2 \
    --batch-size 64 --checkpoint-dir "$t/ckpt_mpi" --resume latest --metrics "$t/cnn_resume.jsonl"
  run_phase train_cnn_amp_w1 "$build/bin/dptrain" train --data "$data" --model cnn --epochs 1 --batch-size 64 \
    --amp --metrics "$t/cnn_amp.jsonl"
  # ZeRO-2 with AMP on CUDA tensors (2 ranks on one GPU over MPI): the sharded step unscales and
  # checks for Inf/NaN across the shards.
  DPTRAIN_BACKEND=mpi run_phase train_cnn_zero2_amp_mpi_w2 bash -c 'mpirun_np "$@"' _ 2 "$build/bin/dptrain" train \
    --data "$data" --model cnn --epochs 1 --batch-size 32 --amp --zero 2 --metrics "$t/cnn_zero2_amp.jsonl"
  run_phase train_resnet18_w1 "$build/bin/dptrain" train --data "$data" --model resnet18 --max-steps 100 \
    --batch-size 128 --metrics "$t/resnet18.jsonl" --log-every 20
  run_phase eval_infer_cnn_w1 bash -c "'$build/bin/dptrain' eval --data '$data' --model '$t/cnn.pt' && \
    '$build/bin/dptrain' infer --data '$data' --model '$t/cnn.pt' --out '$t/logits.pt'"
  rm -rf "$t/ckpt" "$t/ckpt_mpi" "$t/cnn.pt" "$t/logits.pt"
fi

# A training step exported on the GPU (a CUDA package: AOTInductor compiles for the device of the
# example batch) trains under dptrain on the GPU and equals PyTorch there (docs/export.md).
if wants export; then
  limit=240 run_phase export_cuda_w1 "$python" "$root/tests/gpu/export_device_check.py" --device cuda \
    --bin "$build/bin" --work "$out/logs/export"
  rm -f "$out/logs/export/"*.pt2
fi

# A GPT of 11M parameters in bf16, context 256: what issue 34's GPU figure is made of.
if wants lm; then
  limit=150 run_phase lm_bf16_w1 env PYTHONUNBUFFERED=1 "$python" "$root/benchmarks/lm_bench.py" --device cuda \
    --precision bf16 --bin "$build/bin" --worlds 1 --rounds 2 --steps 60 --skip 20 --forms builtin,scripted,pytorch \
    --layers 6 --dim 384 --heads 6 --context 256 --batch 16 --out "$out/bench/lm"
  [ -f "$out/bench/lm/lm.md" ] && grep '^|' "$out/bench/lm/lm.md" | tee -a "$summary"
fi

if wants bench; then
  limit=400 run_phase bench env PYTHONUNBUFFERED=1 "$python" "$root/benchmarks/run_suite.py" --gpu --build "$build" \
    --out "$out/bench" ${DPTRAIN_GPU_BENCH_ARGS:-}
fi
exit $overall
