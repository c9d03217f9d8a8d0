#!/bin/bash
# The README's GGUF tables on stories260K: every type x method, calibrated and evaluated on
#   stories: text sampled from the float model itself (its training text, TinyStories, is not
#            obtainable here), written once to data/stories-{calib,test}.txt by cdquant generate;
#   sotu:    the State of the Union addresses (data/sotu-*.txt, from scripts/fetch_data.sh);
# then the Q4_K (stored as Q5_0) and Q4_0 pairs of RTN plain and CD from the SOTU calibration on
# the other shared texts. Writes NAME.gguf, NAME.TEXT.json (cdquant eval --json) and NAME.qlog
# under OUT_DIR; prints one line per evaluation. About 80 minutes on 2 cores, nearly all of it
# evaluation.
# usage: bash scripts/gguf_table.sh [BUILD_DIR=build] [OUT_DIR=/tmp/gguf-table] [CORPORA="stories sotu"]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/gguf-table}
CORPORA=${3:-stories sotu}
M=../shared/models/stories260K.bin
mkdir -p "$O"

# 1000 stories per file at temperature 1 (the model's own distribution), different seeds.
sample_stories() {  # file seed
  [ -s "$1" ] && return
  "$B/cdquant" generate --model $M --samples 1000 --max-tokens 511 --seed "$2" --quiet --out "$1"
}

evaluate() {  # tag text_file
  local name
  name=$(basename "$2" .txt)
  "$B/cdquant" eval --model $M --quantized "$O/$1.gguf" --text "$2" --ctx 256 --quiet --json \
    > "$O/$1.$name.json"
  echo "$1 $name $(cat "$O/$1.$name.json")"
}

quantize() {  # corpus tag type method [flags...]
  local corpus=$1 tag=$2 type=$3 method=$4
  shift 4
  "$B/cdquant" quantize --model $M --calib "data/$corpus-calib.txt" --out "$O/$tag.gguf" \
    --format gguf --type "$type" --method "$method" --nsamples 128 --seqlen 256 --quiet "$@" \
    > "$O/$tag.qlog" 2>&1
  evaluate "$tag" "data/$corpus-test.txt"
}

sample_stories data/stories-calib.txt 1
sample_stories data/stories-test.txt 2
for corpus in $CORPORA; do
  for t in Q8_0 Q4_0 Q4_K; do
    quantize "$corpus" "${corpus}_${t}_rtnplain" $t rtn --no-importance
    quantize "$corpus" "${corpus}_${t}_rtn" $t rtn
    quantize "$corpus" "${corpus}_${t}_gptq" $t gptq
    quantize "$corpus" "${corpus}_${t}_cd" $t cd
  done
done
if [[ " $CORPORA " == *" sotu "* ]]; then
  for tag in sotu_Q4_K_rtnplain sotu_Q4_K_cd sotu_Q4_0_rtnplain sotu_Q4_0_cd; do
    for text in frankenstein wikitext2-test tinyshakespeare; do
      evaluate $tag ../shared/data/$text.txt
    done
  done
fi
