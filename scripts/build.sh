#!/usr/bin/env bash
# Configures and builds dptrain into $DPTRAIN_BUILD (default ./build). Extra arguments go to cmake.
# DPTRAIN_BUILD_TARGETS="dptrain ..." builds only those targets (and what they need); default: all.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
generator=()
command -v ninja >/dev/null && [ ! -f "$DPTRAIN_BUILD/CMakeCache.txt" ] && generator=(-G Ninja)
torch_prefix=$("$DPTRAIN_PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S "$DPTRAIN_ROOT" -B "$DPTRAIN_BUILD" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$torch_prefix" -DDPTRAIN_PYTHON="$DPTRAIN_PYTHON" "$@"
# Each libtorch translation unit needs about 1.5 GB to compile: cap the jobs by memory too.
mem_gb=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
jobs=$(nproc); [ $((mem_gb / 2)) -lt "$jobs" ] && jobs=$((mem_gb / 2)); [ "$jobs" -lt 1 ] && jobs=1
targets=()
for target in ${DPTRAIN_BUILD_TARGETS:-}; do targets+=(--target "$target"); done
cmake --build "$DPTRAIN_BUILD" -j "$jobs" "${targets[@]}"
