#!/bin/bash
# The README's size-budget allocation figures: per model, GGUF files of uniform types (RTN and
# CD), llama.cpp's mixes (CD) and allocated CD files at several --target-size budgets, all
# self-calibrated (the float model's own samples; no text needed), evaluated on stories the
# float model wrote (KL from the float model, perplexity). Writes OUT_DIR/MODEL/*.gguf, their
# eval JSON, and OUT_DIR/MODEL.csv with one row per file:
#   tag kind type bytes bits_per_weight ppl kl kl_se predicted_weight predicted_objective
# (bits_per_weight: 8 * file bytes / weights of the linears)
# (predicted: sum_l alpha_l t_l^2 from the sensitivity cache, with the weight-space or the
# H-weighted relative error; "-" where the cache has no errors for the method). Then plots
# with scripts/allocation_plot.sh when gnuplot is installed.
# usage: bash scripts/allocation_table.sh [BUILD_DIR=build] [OUT_DIR=/tmp/alloc-table]
#        [MODELS="stories260K babyllama"] [NSAMPLES=64] [EVAL_WINDOWS=100]
# (env SENS_WINDOWS: calibration windows of the sensitivity measurement, default 32; MIXES:
# the llama.cpp mixes, default "Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_M"; POINTS: budgets evenly
# between the smallest and largest uniform file besides the files' own sizes, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/alloc-table}
MODELS=${3:-stories260K babyllama}
NS=${4:-64}
EW=${5:-100}
mkdir -p "$O"

model_path() {
  case $1 in
    stories260K) echo ../shared/models/stories260K.bin ;;
    babyllama) echo ../shared/models/babyllama-tok105/model5000.bin ;;
  esac
}
eval_text() {
  case $1 in
    stories260K) echo data/stories-test.txt ;;
    babyllama) echo data/babyllama-stories-test.txt ;;
  esac
}

# Predicted KL increase of a file from the cache: types per tensor from a JSON object
# {tensor: type} on stdin; $1 the cache, $2 the errors key, $3 0 (weight) or 1 (objective).
predict() {
  jq -r --slurpfile c "$1" --arg k "$2" --argjson i "$3" '
    if ($c[0].errors[$k] == null) then "-" else
    [to_entries[] | $c[0].tensors[.key].alpha * $c[0].errors[$k][.key][.value][$i]] | add
    end'
}

run_model() {
  local name=$1 M T D csv cache key
  M=$(model_path "$name")
  T=$(eval_text "$name")
  D=$O/$name
  mkdir -p "$D"
  csv=$O/$name.csv
  cache=$D/sensitivity.json
  key="gguf|cd|importance=true"
  echo "tag kind type bytes bits_per_weight ppl kl kl_se predicted_weight predicted_objective" > "$csv"
  # Tensor -> type of a uniform file: T where the rows hold it, else F16 (llama.cpp's fallback
  # chain for these types ends there), from the cache's candidate lists.
  uniform_types() {
    jq -c --arg t "$1" --arg k "$key" '.errors[$k] | with_entries(.value = (if .value[$t] then $t else "F16" end))' "$cache"
  }
  quantize() {  # tag method [flags...]
    local tag=$1 method=$2
    shift 2
    [ -s "$D/$tag.gguf" ] || "$B/cdquant" quantize --model "$M" --out "$D/$tag.gguf" --format gguf \
      --method "$method" --nsamples "$NS" --seqlen 256 --sensitivity "$cache" \
      --sensitivity-windows "${SENS_WINDOWS:-32}" --quiet "$@" \
      > "$D/$tag.qlog" 2>&1
    [ -s "$D/$tag.json" ] || "$B/cdquant" eval --model "$M" --quantized "$D/$tag.gguf" --text "$T" \
      --ctx 256 --max-windows "$EW" --quiet --json > "$D/$tag.json"
  }
  row() {  # tag kind type types_json
    local f=$D/$1.gguf bytes lw pw po
    bytes=$(stat -c %s "$f")
    lw=$(jq -r '[.quantized.kl, .quantized.kl_se, .quantized.ppl] | @tsv' "$D/$1.json")
    pw=-
    po=-
    if [ "$4" != "{}" ]; then
      pw=$(echo "$4" | predict "$cache" "$key" 0)
      po=$(echo "$4" | predict "$cache" "$key" 1)
    fi
    # bits_per_weight: 8 * file bytes / linear weights (the whole file, embeddings included, per
    # weight of the linears), comparable across the files of one model.
    echo "$1 $2 $3 $bytes $(awk -v b="$bytes" -v n="$NLIN" 'BEGIN{printf "%.3f", 8*b/n}') $(echo "$lw" | awk '{print $3, $1, $2}') $pw $po" >> "$csv"
    tail -1 "$csv"
  }
  # The allocation first at a budget everything fits: it measures and caches sensitivities and
  # candidate errors for every later file.
  quantize alloc_first cd --target-size 1000000000
  NLIN=$("$B/cdquant" allocation "$D/alloc_first.gguf" | jq .linear_weights)
  for t in Q4_0 Q4_1 Q5_0 Q5_1 Q8_0; do
    if [ $t = Q4_0 ] || [ $t = Q5_0 ] || [ $t = Q8_0 ]; then
      quantize "u_${t}_rtn" rtn --type $t
      row "u_${t}_rtn" uniform_rtn $t '{}'  # the cache holds CD's errors, not RTN's
    fi
    quantize "u_${t}_cd" cd --type $t
    row "u_${t}_cd" uniform_cd $t "$(uniform_types $t)"
  done
  for t in ${MIXES:-Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_M}; do
    quantize "mix_${t}_cd" cd --type $t
    row "mix_${t}_cd" mix_cd $t '{}'
  done
  # Budgets: the sizes of the uniform and mixed CD files and POINTS (3) evenly between the
  # smallest and the largest uniform file.
  local sizes lo hi s
  sizes=$(for f in "$D"/u_*_cd.gguf "$D"/mix_*_cd.gguf; do stat -c %s "$f"; done | sort -n | uniq)
  lo=$(echo "$sizes" | head -1)
  hi=$(stat -c %s "$D/u_Q8_0_cd.gguf")
  sizes=$( (echo "$sizes"; for ((k = 1; k <= ${POINTS:-3}; ++k)); do echo $((lo + (hi - lo) * k / (${POINTS:-3} + 1))); done) | sort -n | uniq)
  for s in $sizes; do
    # At the smallest size every tensor is at its cheapest type already and the plan stored in
    # the file does not fit beside them: that budget is refused (the log says so).
    if ! quantize "alloc_$s" cd --target-size "$s"; then
      echo "alloc_$s: $(tail -1 "$D/alloc_$s.qlog")"
      continue
    fi
    row "alloc_$s" alloc_cd "-" \
      "$("$B/cdquant" allocation "$D/alloc_$s.gguf" | jq -c '.tensors | map({(.[0]): .[1]}) | add')"
  done
}

for m in $MODELS; do run_model "$m"; done
if command -v gnuplot > /dev/null; then
  bash scripts/allocation_plot.sh "$O" $MODELS
else
  echo "gnuplot is not installed (sudo apt-get install -y gnuplot-nox): no plot"
fi
