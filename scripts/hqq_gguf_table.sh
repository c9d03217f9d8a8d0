#!/bin/bash
# Data-free GGUF: ggml's plain block rule (RTN, --no-importance) against HQQ's lp fit of the
# block scales and mins (--method hqq), on the types with mins that the shared models' shapes
# allow (d_in 64/128/352: Q4_1 and Q5_1; the K-quants need d_in a multiple of 256 and fall
# back, see README). KL and ppl on held-out text (data/sotu-test.txt, 200 windows of 256).
# usage: bash scripts/hqq_gguf_table.sh [BUILD_DIR=build] [OUT_DIR=/tmp/cdq-hqq-gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/cdq-hqq-gguf}
mkdir -p "$O"
printf "%-16s %-5s %-6s %9s %9s %7s\n" model type method ppl KL top1
for model in ../shared/models/stories260K.bin ../shared/models/babyllama-tok105/model5000.bin; do
  name=$(basename "$(dirname "$model")")
  [ "$name" = models ] && name=stories260K
  for t in Q4_1 Q5_1; do
    for run in "rtn --no-importance" "hqq"; do
      set -- $run
      m=$1
      shift
      out="$O/$name-$t-$m.gguf"
      "$B/cdquant" quantize --model "$model" --out "$out" --format gguf --type "$t" \
        --method "$m" --quiet "$@" > /dev/null
      "$B/cdquant" eval --model "$model" --quantized "$out" --text data/sotu-test.txt --ctx 256 --max-windows 200 --quiet \
        --json | python3 -c "import json,sys; r=json.load(sys.stdin); \
q=r['quantized']; print('%-16s %-5s %-6s %9.3f %9.5f %7.4f' % ('$name','$t','$m', q['ppl'], q['kl'], q['top1']))"
    done
  done
done
