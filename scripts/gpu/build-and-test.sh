#!/usr/bin/env bash
# One command on a GPU machine (PyTorch 2.11 CUDA in its python3, CUDA toolkit, no network):
# unpacks .gpu-deps/ into a private prefix (never into /), builds dptrain against the system
# torch and the NCCL that torch loads, runs the gpu tests, the mpi tests with CUDA tensors, and
# the GPU benchmarks. Results go to $OUT (or ./gpu-results).
#   bash scripts/gpu/build-and-test.sh            # build + gpu tests + mpi tests + benchmarks
#   DPTRAIN_GPU_SKIP_BENCH=1 bash scripts/gpu/build-and-test.sh
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:-$root/gpu-results}; mkdir -p "$out"
P=${DPTRAIN_DEPS_PREFIX:-/opt/dpt-deps}
mkdir -p "$P"
for f in "$root"/.gpu-deps/*.deb; do dpkg -x "$f" "$P"; done
export OPAL_PREFIX=$P/usr   # a relocated OpenMPI finds its plugins through this
export LD_LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openmpi/lib:${LD_LIBRARY_PATH:-}
export PATH=$P/usr/bin:$PATH
ln -sf "$P/usr/bin/mpiexec.openmpi" "$P/usr/bin/mpirun" 2>/dev/null
python=${DPTRAIN_PYTHON:-python3}
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))' | tee "$out/machine.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$out/machine.txt" 2>&1
build=$root/build-gpu
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDPTRAIN_PYTHON="$(command -v "$python")" \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$P/usr" -DDPTRAIN_WITH_CUDA=ON -DDPTRAIN_WITH_NCCL=ON \
  -DMPI_C_COMPILER=$P/usr/bin/mpicc.openmpi -DMPI_CXX_COMPILER=$P/usr/bin/mpicxx.openmpi \
  2>&1 | tee "$out/configure.log" | tail -15
cmake --build "$build" -j "$(nproc)" 2>&1 | tail -5 | tee "$out/build.log"
status=0
(cd "$build" && ctest --output-on-failure -L "gpu|mpi|unit|cli" --timeout 900) 2>&1 | tee "$out/ctest.log" | tail -30
grep -q "tests passed" "$out/ctest.log" && grep -q "100% tests passed" "$out/ctest.log" || status=1
if [ "${DPTRAIN_GPU_SKIP_BENCH:-0}" != 1 ] && [ -f "$root/benchmarks/run_suite.py" ]; then
  DPTRAIN_BUILD=$build "$python" "$root/benchmarks/run_suite.py" --gpu --out "$out/bench" 2>&1 | tee "$out/bench.log" | tail -30
fi
exit $status
