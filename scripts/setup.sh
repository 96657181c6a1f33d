#!/usr/bin/env bash
# Sets up the core for the machine it runs on: the system libraries bpy needs (Debian/Ubuntu), a
# .venv with Python 3.11, the torch build for this machine's GPU (installed first), the pinned rest,
# the project in editable mode, and a record the Blender add-on finds the core by (no path to type).
#
#   bash scripts/setup.sh            choose the torch build: an NVIDIA driver answering nvidia-smi
#                                    -> the CUDA build; macOS -> PyPI's build (Apple GPU via MPS);
#                                    else the CPU build. The choice and why are printed and recorded.
#   bash scripts/setup.sh --cuda     the CUDA build, whatever is detected (e.g. before the driver)
#   bash scripts/setup.sh --cpu      the CPU build (small; no GPU)
#   bash scripts/setup.sh --dry-run  print the choice and the pip commands; install nothing
#
# Idempotent: a second run checks a stamp (which includes the build) and returns in a second;
# asking for another build replaces torch. NVIDIA_SMI names the probe (default: nvidia-smi on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
APT_PACKAGES=(libx11-6 libxext6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libxt6 libgl1
              libxxf86vm1 libgomp1)
TORCH_PIN="torch==2.13.0"
# PyPI's Linux x86_64 wheel of torch is the CUDA build (it pulls the nvidia-* runtime wheels, a few
# GB); the CPU build comes from PyTorch's own index; macOS wheels on PyPI carry MPS.
CPU_INDEX="https://download.pytorch.org/whl/cpu"
PYPI_INDEX="https://pypi.org/simple"

build="" dry_run=0
for arg in "$@"; do
  case "$arg" in
    --cpu) build=cpu ;;
    --cuda) build=cuda ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown option $arg (--cpu, --cuda, --dry-run)" >&2; exit 2 ;;
  esac
done

reason="asked for with --$build"
if [ -z "$build" ]; then
  smi=${NVIDIA_SMI:-nvidia-smi}
  if [ "$(uname -s)" = "Darwin" ]; then
    build=default reason="macOS: PyPI's torch build, which uses the Apple GPU through MPS"
  elif ! command -v "$smi" >/dev/null 2>&1; then
    build=cpu reason="no NVIDIA driver found ($smi is not on PATH)"
  elif gpus=$("$smi" -L 2>/dev/null) && grep -q "^GPU " <<<"$gpus"; then
    build=cuda reason="NVIDIA driver found: $(grep -m1 "^GPU " <<<"$gpus" | sed 's/ (UUID.*//')"
  else
    build=cpu reason="$smi is on PATH but lists no GPU (driver not loaded?)"
  fi
fi
echo "setup: torch build: $build ($reason)" >&2

torch_installs() {
  # The pip command line that installs the chosen build into .venv. The CPU build: first a wheel
  # pip already has (--no-index --no-deps: find-links, a local cache; fails at once without one),
  # then torch's dependencies from PyPI; else torch from PyTorch's CPU index (its +cpu build wins
  # over PyPI's CUDA build of the same version) with PyPI for the dependencies.
  local pip=".venv/bin/python -m pip install -q"
  case "$build" in
    cpu) echo "{ $pip --no-index --no-deps $TORCH_PIN && $pip $TORCH_PIN; } || $pip $TORCH_PIN --index-url $CPU_INDEX --extra-index-url $PYPI_INDEX" ;;
    cuda) echo "$pip $TORCH_PIN --index-url $PYPI_INDEX" ;;
    default) echo "$pip $TORCH_PIN" ;;
  esac
}

if [ "$dry_run" = 1 ]; then
  echo "setup: dry run, would run:" >&2
  [ -x .venv/bin/python ] || echo "  $PYTHON -m venv .venv"
  torch_installs | sed 's/^/  /'
  echo "  .venv/bin/python -m pip install -q -r requirements.txt $TORCH_PIN"
  echo "  .venv/bin/python -m pip install -q --no-deps -e ."
  echo "  .venv/bin/python blender_deepfake/core_record.py write ... (record: $(python3 blender_deepfake/core_record.py path))"
  exit 0
fi

missing=()
if command -v dpkg >/dev/null 2>&1; then
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system libraries: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

write_record() {
  .venv/bin/python blender_deepfake/core_record.py write --python "$PWD/.venv/bin/python" --project "$PWD" \
    --torch-build "$build" --reason "$reason" >/dev/null
  echo "setup: the Blender add-on finds this core through $(.venv/bin/python blender_deepfake/core_record.py path)" >&2
}

stamp=.venv/.setup-stamp
want=$( (cat requirements.txt pyproject.toml scripts/setup.sh; echo "$build") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv is up to date" >&2
  write_record
  exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Another build than the one installed (e.g. --cuda after a CPU setup): pip would keep it, since
# both are 2.13.0, so it goes first.
have=$(.venv/bin/python -c "import torch; print('cuda' if torch.version.cuda else 'cpu')" 2>/dev/null || true)
if [ -n "$have" ] && [ "$build" != default ] && [ "$have" != "$build" ]; then
  echo "setup: replacing the installed $have build of torch" >&2
  .venv/bin/python -m pip uninstall -q -y torch
fi
eval "$(torch_installs)"
# The constraint keeps the resolver from swapping torch for another build behind our back.
.venv/bin/python -m pip install -q -r requirements.txt "$TORCH_PIN"
.venv/bin/python -m pip install -q --no-deps -e .
got=$(.venv/bin/python -c "import torch; print('cuda' if torch.version.cuda else 'cpu')")
if [ "$build" = cuda ] && [ "$got" != cuda ]; then
  echo "setup: asked for the CUDA build of torch but pip installed a $got build (a local wheel?)" >&2
  exit 1
fi
echo "$want" > "$stamp"
write_record
echo "setup: done" >&2
