# Sourced by the scripts: where the pinned torch lives and how CMake finds it.
DPTRAIN_TORCH_VERSION=2.11.0
DPTRAIN_TORCHVISION_VERSION=0.26.0  # the release that pairs with torch 2.11
DPTRAIN_CACHE=${DPTRAIN_CACHE:-$HOME/.cache/dptrain}
DPTRAIN_VENV=${DPTRAIN_VENV:-$DPTRAIN_CACHE/torch-$DPTRAIN_TORCH_VERSION}
DPTRAIN_PYTHON=$DPTRAIN_VENV/bin/python
DPTRAIN_CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
DPTRAIN_ROOT=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # -P: the checkout itself, reached through links too
DPTRAIN_BUILD=${DPTRAIN_BUILD:-$DPTRAIN_ROOT/build}
# An existing build directory by its real path: CMake's cache remembers the path it was made at,
# and the same directory reached through a link would reconfigure (and rebuild) it there.
if [ -d "$DPTRAIN_BUILD" ]; then DPTRAIN_BUILD=$(cd -P "$DPTRAIN_BUILD" && pwd); fi
export DPTRAIN_TORCH_VERSION DPTRAIN_TORCHVISION_VERSION DPTRAIN_CACHE DPTRAIN_VENV DPTRAIN_PYTHON DPTRAIN_ROOT DPTRAIN_BUILD
if [ -d "$DPTRAIN_CUDA_HOME/bin" ]; then
  export PATH="$PATH:$DPTRAIN_CUDA_HOME/bin"
fi
