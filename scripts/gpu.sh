#!/usr/bin/env bash
# The GPU checks, for a machine with CUDA GPUs and CUDA builds of torch and jax (pip install torch
# 'jax[cuda12]' there: constraints.txt pins the CPU build of torch, so this script does not install):
# `check` on torch-cuda, jax-gpu and the vocabulary-parallel torch backend over NCCL (one GPU per rank;
# W = 1, and 2 where there are two GPUs), then one `compare` of them all beside numpy, torch and jax on the
# CPU. Everything goes to ${OUT:-gpu-report}/: each check's terminal output and JSON, the compare report.
# Exit status: the number of checks that failed or could not run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-report}"
mkdir -p "$OUT"
python -c "import torch; print('torch', torch.__version__, 'CUDA devices:', torch.cuda.device_count())" | tee "$OUT/devices.txt"
python -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tail -1 | tee -a "$OUT/devices.txt"
backends=(torch-cuda jax-gpu torch-vocab-parallel-1-cuda)
[ "$(python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ] && backends+=(torch-vocab-parallel-2-cuda)
failed=0
for backend in "${backends[@]}"; do
    python -m xentcheck.cli check --backend "$backend" --no-progress --json "$OUT/check-$backend.json" \
        > "$OUT/check-$backend.txt" 2>&1
    code=$?
    echo "check $backend: exit $code (0 passed, 1 failed, 2 could not run)"
    [ "$code" -ne 0 ] && failed=$((failed + 1))
done
specs="numpy,torch,jax,$(IFS=,; echo "${backends[*]}")"
python -m xentcheck.cli compare --backends "$specs" --out "$OUT/compare" --no-progress > "$OUT/compare.txt" 2>&1
echo "compare $specs: exit $? (report in $OUT/compare/report.md)"
exit "$failed"
