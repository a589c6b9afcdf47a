#!/usr/bin/env bash
# Run on a Debian 12 machine WITH network (a CPU dev box): downloads the Debian packages a GPU
# machine without network lacks (OpenMPI, spdlog/fmt, GoogleTest, CLI11, nlohmann-json, libpng)
# into .gpu-deps/ (about 10 MB). Carry that folder to the GPU machine, then run build-and-test.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$root/.gpu-deps"
cd "$root/.gpu-deps"
apt-get update -qq
apt-get download \
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libgtest-dev libgmock-dev googletest \
  openmpi-bin libopenmpi3 libopenmpi-dev openmpi-common libhwloc15 libevent-2.1-7 \
  libevent-core-2.1-7 libevent-pthreads-2.1-7 libpmix2 libfabric1 libucx0 libibverbs1 \
  librdmacm1 libpsm-infinipath1 libpsm2-2 libnl-3-200 libnl-route-3-200 libmunge2 \
  libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libpng-dev libpng16-16 zlib1g-dev \
  libjpeg-dev libjpeg62-turbo-dev libjpeg62-turbo \
  libzip-dev libzip4 libisal-dev libisal2 libprotobuf-dev libprotobuf32 libprotobuf-lite32 \
  protobuf-compiler libprotoc32
ls -1 "$root/.gpu-deps" | wc -l | xargs echo "[gpu-deps] packages in .gpu-deps:"
