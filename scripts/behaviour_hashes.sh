#!/bin/bash
# Fingerprints of cdquant's behaviour, to show that a refactor changed nothing: the demo table
# (its last column, seconds, dropped), and every GGUF file and GPTQ checkpoint of stories260K
# that scripts/gguf_table.sh and scripts/gptq_table.sh make (same flags, same seeds), without
# their evaluations. Prints "sha256  name" per output, sorted; compare two runs with diff.
# Thread count is pinned (OMP_NUM_THREADS=2) so two runs on one machine are comparable.
# About 10 minutes on 2 cores (the first run also samples data/stories-*.txt, as gguf_table.sh).
# usage: bash scripts/behaviour_hashes.sh [BUILD_DIR=build] [OUT_DIR=/tmp/cdq-hashes] > hashes.txt
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/cdq-hashes}
M=../shared/models/stories260K.bin
export OMP_NUM_THREADS=2
rm -rf "${O:?}"
mkdir -p "$O"

sample_stories() {  # file seed (as scripts/gguf_table.sh)
  [ -s "$1" ] && return
  "$B/cdquant" generate --model $M --samples 1000 --max-tokens 511 --seed "$2" --quiet --out "$1"
}
sample_stories data/stories-calib.txt 1
sample_stories data/stories-test.txt 2

"$B/cdquant" demo | awk '{ $NF = ""; print }' > "$O/demo.txt"

for corpus in stories sotu; do
  for t in Q8_0 Q4_0 Q4_K; do
    for run in "rtnplain rtn --no-importance" "rtn rtn" "gptq gptq" "cd cd"; do
      set -- $run
      tag=${corpus}_${t}_$1
      method=$2
      shift 2
      "$B/cdquant" quantize --model $M --calib "data/$corpus-calib.txt" --out "$O/$tag.gguf" \
        --format gguf --type "$t" --method "$method" --nsamples 128 --seqlen 256 --quiet "$@" \
        > /dev/null
    done
  done
done

for bits in 4 3 2; do
  for method in rtn gptq cd; do
    "$B/cdquant" quantize --model $M --calib data/stories-calib.txt \
      --out "$O/g32_${bits}bit_$method" --format gptq --bits $bits --group 32 \
      --method $method --nsamples 128 --seqlen 256 --quiet > /dev/null
  done
done

(cd "$O" && find . -type f | sort | xargs sha256sum)
