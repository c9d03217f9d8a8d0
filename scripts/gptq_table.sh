#!/bin/bash
# The README's GPTQ-checkpoint table on stories260K: 4/3/2-bit g32 checkpoints (--format gptq)
# by RTN, GPTQ and CD, calibrated and evaluated on the stories the float model wrote
# (data/stories-{calib,test}.txt, made by scripts/gguf_table.sh). Writes NAME/ (the checkpoint)
# and NAME.json (cdquant eval --json) under OUT_DIR; prints one line per checkpoint with the
# bytes of its model.safetensors. About 15 minutes on 2 cores.
# usage: bash scripts/gptq_table.sh [BUILD_DIR=build] [OUT_DIR=/tmp/gptq-table]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/gptq-table}
M=../shared/models/stories260K.bin
[ -s data/stories-calib.txt ] && [ -s data/stories-test.txt ] ||
  { echo "gptq_table: run scripts/gguf_table.sh first (it writes data/stories-*.txt)" >&2; exit 1; }
mkdir -p "$O"
for bits in 4 3 2; do
  for method in rtn gptq cd; do
    tag=g32_${bits}bit_$method
    rm -rf "${O:?}/$tag"
    "$B/cdquant" quantize --model $M --calib data/stories-calib.txt --out "$O/$tag" \
      --format gptq --bits $bits --group 32 --method $method --nsamples 128 --seqlen 256 \
      --quiet > "$O/$tag.qlog" 2>&1
    "$B/cdquant" eval --model $M --quantized "$O/$tag" --text data/stories-test.txt --ctx 256 \
      --quiet --json > "$O/$tag.json"
    echo "$tag $(stat -c %s "$O/$tag/model.safetensors") $(cat "$O/$tag.json")"
  done
done
