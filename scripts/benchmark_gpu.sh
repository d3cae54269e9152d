#!/usr/bin/env bash
# The accelerator benchmark (scripts/benchmark_gpu.py): DDPM++ and NCSN++ CIFAR-10 training at batch
# 128 in float32 and bfloat16 (images/s, MFU, peak memory, compile time) and PC / DPM-Solver++
# sampling at 20 NFE, as JSON; within 8 minutes on one GPU. Usage:
#   scripts/benchmark_gpu.sh [OUTPUT.json] [more flags, e.g. --peak_tflops=989 or --toy]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmark_gpu.json}"
shift || true
exec timeout 480 python -m scripts.benchmark_gpu --output="$out" --budget_s=390 "$@"
