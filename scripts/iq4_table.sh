#!/bin/bash
# The README's IQ4_NL / IQ4_XS rows on stories260K's own text (data/stories-{calib,test}.txt,
# sampled from the float model by scripts/gguf_table.sh): RTN with ggml's plain scales
# (--no-importance), RTN / GPTQ / CD on the importance-weighted (diag(H)) scales, as
# scripts/gguf_table.sh does for the other types. stories260K's rows (64 and 172 inputs) do not
# fill IQ4_XS's 256-weight blocks, so IQ4_XS falls back to IQ4_NL there as in llama.cpp (and
# 172-input ffn_down to F16): the IQ4_XS files are the IQ4_NL ones. Writes NAME.gguf,
# NAME.stories-test.json and NAME.qlog under OUT_DIR; prints one line per file.
# usage: bash scripts/iq4_table.sh [BUILD_DIR=build] [OUT_DIR=/tmp/iq4-table] [TYPES="IQ4_NL IQ4_XS"]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/iq4-table}
TYPES=${3:-IQ4_NL IQ4_XS}
M=../shared/models/stories260K.bin
mkdir -p "$O"
for f in data/stories-calib.txt data/stories-test.txt; do
  [ -s "$f" ] || { echo "missing $f: run scripts/gguf_table.sh (it samples them) first" >&2; exit 1; }
done

quantize() {  # tag type method [flags...]
  local tag=$1 type=$2 method=$3
  shift 3
  "$B/cdquant" quantize --model $M --calib data/stories-calib.txt --out "$O/$tag.gguf" \
    --format gguf --type "$type" --method "$method" --nsamples 128 --seqlen 256 --quiet "$@" \
    > "$O/$tag.qlog" 2>&1
  "$B/cdquant" eval --model $M --quantized "$O/$tag.gguf" --text data/stories-test.txt \
    --ctx 256 --quiet --json > "$O/$tag.stories-test.json"
  echo "$tag $(stat -c %s "$O/$tag.gguf") $(cat "$O/$tag.stories-test.json")"
}

for t in $TYPES; do
  quantize "${t}_rtnplain" "$t" rtn --no-importance
  quantize "${t}_rtn" "$t" rtn
  quantize "${t}_gptq" "$t" gptq
  quantize "${t}_cd" "$t" cd
done
