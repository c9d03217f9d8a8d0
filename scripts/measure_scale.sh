#!/usr/bin/env bash
# Measures the pipeline at real scale on seeded random-weight HF checkpoints with the exact
# shapes of Llama-3.2-1B and Llama-2-7B: seconds per block and peak RSS (GNU time).
# Usage: bash scripts/measure_scale.sh [WORKDIR]   (needs ~35 GB of free disk)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/cdq-scale}
mkdir -p "$work"
calib=data/sotu-calib.txt
[ -s "$calib" ] || bash scripts/fetch_data.sh

run() {  # name, then the quantize arguments
  local name=$1; shift
  /usr/bin/time -v ./build/cdquant quantize "$@" 2>"$work/$name.log" >"$work/$name.out" || {
    tail -5 "$work/$name.log"; exit 1; }
  local rss secs
  rss=$(grep "Maximum resident" "$work/$name.log" | awk '{print $NF}')
  secs=$(grep "Elapsed (wall" "$work/$name.log" | awk '{print $NF}')
  echo "$name: wall $secs, peak RSS $((rss / 1024)) MiB"
  grep -E "^\[ *[0-9]+/" "$work/$name.log" | tail -3
}

./build/bench/make_random_hf --arch llama-3.2-1b --out "$work/llama1b"
run llama1b-gptq --model "$work/llama1b" --calib "$calib" --nsamples 8 --seqlen 256 \
  --method gptq --bits 4 --group 128 --out "$work/llama1b-gptq" --format gptq
rm -rf "$work/llama1b-gptq"

./build/bench/make_random_hf --arch llama-2-7b --out "$work/llama7b"
run llama7b-rtn --model "$work/llama7b" --calib "$calib" --nsamples 2 --seqlen 128 \
  --method rtn --bits 4 --group 128 --out "$work/llama7b-rtn" --format gptq
rm -rf "$work/llama7b" "$work/llama7b-rtn"
