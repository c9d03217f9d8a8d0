#!/bin/bash
# The README's GGUF tables: every type x method on stories260K, evaluated on the whole SOTU test
# text, then the Q4_K (stored as Q5_0) and Q4_0 pairs of RTN plain and CD on the other shared
# texts. Writes NAME.gguf, NAME.TEXT.json (cdquant eval --json) and NAME.qlog under OUT_DIR;
# prints one line per file. About 45 minutes on 2 cores, nearly all of it evaluation.
# usage: bash scripts/gguf_table.sh [BUILD_DIR=build] [OUT_DIR=/tmp/gguf-table]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/gguf-table}
M=../shared/models/stories260K.bin
mkdir -p "$O"

evaluate() {  # tag text_file
  local name
  name=$(basename "$2" .txt)
  "$B/cdquant" eval --model $M --quantized "$O/$1.gguf" --text "$2" --ctx 256 --quiet --json \
    > "$O/$1.$name.json"
  echo "$1 $name $(cat "$O/$1.$name.json")"
}

quantize() {  # tag type method [flags...]
  local tag=$1 type=$2 method=$3
  shift 3
  "$B/cdquant" quantize --model $M --calib data/sotu-calib.txt --out "$O/$tag.gguf" \
    --format gguf --type "$type" --method "$method" --nsamples 128 --seqlen 256 --quiet "$@" \
    > "$O/$tag.qlog" 2>&1
  evaluate "$tag" data/sotu-test.txt
}

for t in Q8_0 Q4_0 Q4_K; do
  quantize "${t}_rtnplain" $t rtn --no-importance
  quantize "${t}_rtn" $t rtn
  quantize "${t}_gptq" $t gptq
  quantize "${t}_cd" $t cd
done
for tag in Q4_K_rtnplain Q4_K_cd Q4_0_rtnplain Q4_0_cd; do
  for text in frankenstein wikitext2-test tinyshakespeare; do
    evaluate $tag ../shared/data/$text.txt
  done
done
