#!/usr/bin/env bash
# Run ON THE DEVICE MACHINE, in the repo root, with .gpu/ carried (see prepare.sh). Everything in one go, within
# the 10-minute limit of one command; each part prints its own figures and a part that cannot run says why.
#   device run:  command "bash benchmarks/gpu_check/run.sh"  carry [".gpu"]  timeout_s 590
set -uo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl \
  || { echo "could not install the carried wheels"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 LFT_CACHE=/tmp/lft-cache LFT_ADAPTERS_DIR=/tmp/runs
nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv,noheader || true
mkdir -p "${OUT:-/tmp/out}"
timeout 580 python3 benchmarks/gpu_check/check.py 2>&1 | tee "${OUT:-/tmp/out}/gpu_check.txt"
