#!/usr/bin/env bash
# Every accelerator benchmark row in one command, printing ONE Markdown table (gpu_bench.py):
# encode rows, CoOp / CoCoOp / BiomedCoOp train steps, the packed 16-point grid (grid.py),
# fp32 and bf16, biomedjax (JAX) vs the PyTorch reference on the same device.
#
#   bash benchmarks/gpu.sh [gpu_bench.py args]     # on the GPU machine, from the repo root
#   bash benchmarks/gpu.sh --download [DIR]        # on a networked machine: fetch the wheels
#   JAX_PLATFORMS=cpu BIOMEDJAX_BENCH_TINY=1 bash benchmarks/gpu.sh   # CPU dry run, tiny sizes
#
# The GPU machine has no network: the packages of benchmarks/gpu-wheels.txt travel as wheels in
# $BIOMEDJAX_WHEELS (default .whl/ in the repo root, git-ignored) and are installed with
# --no-index --no-deps into a scratch folder put first on PYTHONPATH. Without that folder (or
# with every package already importable, as in a dev venv) nothing is installed.
# $PYTHON picks the interpreter (default python3: the GPU machine's, which holds torch and JAX).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${BIOMEDJAX_WHEELS:-.whl}

if [[ "${1:-}" == "--download" ]]; then
  dest=${2:-$WHEELS}
  # The GPU machine: CPython 3.12 on x86_64 Linux (pip matches manylinux tags exactly).
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$dest" -r benchmarks/gpu-wheels.txt
  ls -l "$dest"
  exit 0
fi

if ! "$PY" -c "import grain, ml_collections, open_clip, tensorboardX" 2>/dev/null; then
  if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "gpu.sh: grain/ml_collections/open_clip/tensorboardX missing and no wheels in $WHEELS;" \
         "run 'bash benchmarks/gpu.sh --download' on a networked machine and carry $WHEELS" >&2
    exit 2
  fi
  site=${TMPDIR:-/tmp}/biomedjax-gpu-site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$WHEELS"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$PY" -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', \
torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')" >&2
exec "$PY" benchmarks/gpu_bench.py "$@"
