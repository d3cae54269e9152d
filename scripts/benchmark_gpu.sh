#!/usr/bin/env bash
# The accelerator benchmark, within ~9.5 minutes on one GPU:
# 1. scripts/benchmark_gpu.py: DDPM++ and NCSN++ CIFAR-10 training at batch 128 in float32 and
#    bfloat16 (images/s, MFU, peak memory, compile time) and PC / DPM-Solver++ sampling at 20 NFE
#    (images/s, sampler overhead over its network calls) -> OUT_DIR/gpu.json;
# 2. peak memory (XLA's memory analysis) of one NCSN++ deep step at batch 128, plain, with
#    model.remat and with training.grad_accum_steps=4 -> OUT_DIR/mem*.json, as time allows.
# Usage: scripts/benchmark_gpu.sh [OUT_DIR] [more flags for benchmark_gpu.py, e.g. --peak_tflops=989]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmark_gpu}"
shift || true
mkdir -p "$out"
timeout 400 python -m scripts.benchmark_gpu --output="$out/gpu.json" --budget_s=300 "$@"
echo "benchmark_gpu rc=$? at ${SECONDS}s"
for extra in "" "--config.model.remat=true" "--config.training.grad_accum_steps=4"; do
  left=$((570 - SECONDS))
  if [ "$left" -lt 45 ]; then echo "no time left for the memory case '$extra'"; break; fi
  name=mem$(echo "$extra" | tr -dc 'a-z_')
  timeout "$left" python -m scripts.benchmark_train_step --config=configs/ve/cifar10_ncsnpp_deep_continuous.py \
      --batch_size=128 --compile_only $extra --output="$out/$name.json"
  echo "$name rc=$? at ${SECONDS}s"
done
