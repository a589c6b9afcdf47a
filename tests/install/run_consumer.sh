#!/usr/bin/env bash
# Installs the build into a temporary prefix, builds tests/install/consumer against the installed
# package alone (find_package(dptrain)), and runs it on 2 ranks.
set -euo pipefail
build_dir=$1 source_dir=$2 mpirun=$3
work=$(mktemp -d /tmp/dpt-consumer-XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
# CMAKE_GENERATOR, CC and CXX come from CTest's environment (tests/CMakeLists.txt): the main build's.
make_program=()
[ -n "${DPTRAIN_CONSUMER_MAKE_PROGRAM:-}" ] && make_program=(-DCMAKE_MAKE_PROGRAM="$DPTRAIN_CONSUMER_MAKE_PROGRAM")
cmake -S "$source_dir/tests/install/consumer" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" "${make_program[@]}" >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$mpirun" -np 2 "$work/build/consumer"
