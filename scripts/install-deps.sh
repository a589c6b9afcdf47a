#!/usr/bin/env bash
# Installs what dptrain needs and is missing; skips what is present and says what it installs.
# Idempotent: run it as often as you like. As root (apt); on a machine without apt only the venv
# step runs. Environment:
#   DPTRAIN_CACHE   where the torch virtual environment lives (default ~/.cache/dptrain); it is
#                   keyed by the pinned version so every clone on this machine reuses it.
#   DPTRAIN_SKIP_APT=1   do not touch system packages.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"

say() { echo "[install-deps] $*"; }

# --- Debian packages -------------------------------------------------------------------------
apt_packages=(
  g++ cmake ninja-build git pkg-config python3 python3-venv python3-pip
  libopenmpi-dev openmpi-bin libspdlog-dev libgtest-dev libgmock-dev
  libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libpng-dev libjpeg-dev zlib1g-dev dataset-fashion-mnist
  libzip-dev libprotobuf-dev protobuf-compiler libisal-dev iproute2
)
if [ "${DPTRAIN_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # pyenv or another python3 on PATH can stand in for Debian's: then python3-venv is not needed.
  if python3 -c 'import venv, ensurepip' 2>/dev/null; then
    missing=("${missing[@]/python3-venv}"); missing=("${missing[@]/python3-pip}"); missing=("${missing[@]/python3}")
  fi
  read -r -a missing <<<"${missing[*]}"
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    [ "$(id -u)" = 0 ] || { echo "[install-deps] error: need root to apt-get install ${missing[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "Debian packages present"
  fi
fi

# --- libtorch: the pinned torch wheel in a cached virtual environment ---------------------------
if "$DPTRAIN_PYTHON" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$DPTRAIN_TORCH_VERSION')" 2>/dev/null; then
  say "torch $DPTRAIN_TORCH_VERSION present in $DPTRAIN_VENV"
else
  say "creating $DPTRAIN_VENV with torch==$DPTRAIN_TORCH_VERSION (several GB, once per machine)"
  mkdir -p "$(dirname "$DPTRAIN_VENV")"
  python3 -m venv "$DPTRAIN_VENV"
  "$DPTRAIN_VENV/bin/pip" install -q --upgrade pip
  "$DPTRAIN_VENV/bin/pip" install -q "torch==$DPTRAIN_TORCH_VERSION"
fi
# Python extras: numpy for torch, matplotlib for the benchmark plots and dptrain-plot, tensorboard
# (its reader checks our event files; users watch runs with it), tokenizers (Hugging Face's: the BPE
# of scripts/data/tokenize_text.py, trained offline on the corpus); for the tests of other tasks,
# scikit-learn (its bundled diabetes data) and torchvision (its operators), the release that pairs
# with the pinned torch, without touching torch itself.
if ! "$DPTRAIN_PYTHON" -c "import numpy, matplotlib, sklearn, tensorboard, tokenizers" 2>/dev/null; then
  say "installing numpy, matplotlib, scikit-learn, tensorboard and tokenizers into $DPTRAIN_VENV"
  "$DPTRAIN_VENV/bin/pip" install -q numpy matplotlib scikit-learn tensorboard tokenizers
fi
if ! "$DPTRAIN_PYTHON" -c "import torchvision, sys; sys.exit(torchvision.__version__.split('+')[0] != '$DPTRAIN_TORCHVISION_VERSION')" 2>/dev/null; then
  say "installing torchvision==$DPTRAIN_TORCHVISION_VERSION into $DPTRAIN_VENV"
  "$DPTRAIN_VENV/bin/pip" install -q --no-deps "torchvision==$DPTRAIN_TORCHVISION_VERSION" pillow
fi
# Python's shared library: torchvision's operator library (a Python extension module) needs its C
# API to load into dptrain (--load-ops; nothing of Python runs).
libpython=$("$DPTRAIN_PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") + "/" + sysconfig.get_config_var("INSTSONAME"))')
if [ ! -e "$libpython" ] && [ "${DPTRAIN_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  package=libpython$("$DPTRAIN_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  say "installing $package ($libpython)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
fi

# torch's CUDA must be the toolkit's, or CUDA code compiled here will not match libtorch.
torch_cuda=$("$DPTRAIN_PYTHON" -c 'import torch; print(torch.version.cuda or "")')
if [ -n "$torch_cuda" ] && [ -x "$DPTRAIN_CUDA_HOME/bin/nvcc" ]; then
  toolkit=$("$DPTRAIN_CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
  if [ "$toolkit" != "$torch_cuda" ]; then
    echo "[install-deps] warning: torch is built for CUDA $torch_cuda but $DPTRAIN_CUDA_HOME has $toolkit; configure will stop" >&2
  else
    say "CUDA toolkit $toolkit matches torch's CUDA $torch_cuda"
  fi
fi
say "done"
