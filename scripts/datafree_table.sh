#!/bin/bash
# The README's "Without calibration data" table: stories260K and babyllama-tok105 quantized at
# 2, 3 and 4 bits, per channel and g32 where a method has groups, to --format float by
#   RTN (minmax), HQQ, EasyQuant (per channel only), HIGGS p=1 / p=2 (Hadamard blocks, no
#   groups)                                     -- data-free: no calibration is read;
#   GPTQ-self, CD-self, HIGGS+GPTQ-self,
#   HIGGS+CD-self                                -- calibrated on 128 x 256 tokens the float
#                                                   model samples itself (no --calib);
#   CD-text                                      -- the reference, calibrated on data/sotu-calib.txt;
# each evaluated against its float model (cdquant eval --ctx 256 --max-windows WINDOWS) on
# data/sotu-test.txt and on the model's own stories (stories260K: data/stories-test.txt, from
# scripts/gguf_table.sh; babyllama: data/babyllama-stories-test.txt, written here once by
# cdquant generate). Bits per weight are over the 35 linears, computed exactly from the layer
# shapes in the checkpoint header (EasyQuant: with the outliers each layer reports; HIGGS: b
# per code and an fp16 per block over d_in padded to whole blocks, the nominal b + 16/h beside).
# Writes TAG.log (quantize output), TAG.sotu.json, TAG.stories.json (cdquant eval --json) and
# TAG.row under OUT_DIR; a run whose .row exists is not redone, whatever the build (delete
# OUT_DIR to start over).
# Prints one line per run, then the markdown tables (also in OUT_DIR/table.md). About 17
# minutes on 2 cores with WINDOWS=64.
# usage: bash scripts/datafree_table.sh [BUILD_DIR=build] [OUT_DIR=/tmp/datafree-table] [WINDOWS=64]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/datafree-table}
WINDOWS=${3:-64}
MODELS=${MODELS:-stories260K babyllama}   # environment: a subset, e.g. MODELS=stories260K
BITS=${BITS:-4 3 2}                        # environment: a subset, e.g. BITS=3
SEED=0       # self-calibration seed (the story files were sampled with seeds 1 and 2)
CAL=(--nsamples 128 --seqlen 256 --seed $SEED)
mkdir -p "$O"
: > "$O/rows.tsv"
: > "$O/skipped.txt"
HAVE_HIGGS_CD=0
[[ $("$B/cdquant" quantize --help) == *higgs-cd* ]] && HAVE_HIGGS_CD=1

model_path() {
  case $1 in
    stories260K) echo ../shared/models/stories260K.bin ;;
    babyllama) echo ../shared/models/babyllama-tok105/model5000.bin ;;
  esac
}
stories_path() {
  case $1 in
    stories260K) echo data/stories-test.txt ;;
    babyllama) echo data/babyllama-stories-test.txt ;;
  esac
}

skip() {  # model label bits group reason
  echo "skipped: $1 $2 $3-bit $4: $5"
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$O/skipped.txt"
}

# Bits per weight over the linears of one block (all blocks have the same shapes), from the
# llama2.c header: dim, hidden, n_layers, n_heads, n_kv_heads. kind: int (asymmetric integer
# grid: b + (16 + b) per group), hqq (fractional zero: b + 32 per group), easyquant
# (b + 16 per row + 48 per float outlier, counted from the log), higgs (stored: b per code and
# 16 per block of h over d_in padded to whole blocks; nominal: b + 16/h).
bpw() {  # model_path bits group kind log
  local hdr
  read -r -a hdr <<< "$(od -An -v -w20 -t d4 -N 20 "$1")"
  awk -v dim="${hdr[0]}" -v hid="${hdr[1]}" -v nh="${hdr[3]}" -v nkv="${hdr[4]}" \
      -v b="$2" -v g="$3" -v kind="$4" '
    function h_of(d,  h) { h = 1; while (h < d) h *= 2; return h < 64 ? 64 : (h > 512 ? 512 : h) }
    function stored(d,  h, pad) {  # HIGGS keeps codes for d_in padded to whole blocks
      h = h_of(d); pad = int((d + h - 1) / h) * h; return (b * pad + 16 * pad / h) / d
    }
    function nominal(d,  G, ng) {
      G = g > 0 ? g : d; ng = int((d + G - 1) / G)
      if (kind == "hqq") return b + 32 * ng / d
      if (kind == "easyquant") return b + 16 / d
      if (kind == "higgs") return b + 16 / h_of(d)       # nominal: b plus an fp16 per block
      return b + (16 + b) * ng / d
    }
    BEGIN {
      kv = dim * nkv / nh
      split("attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down", nm, " ")
      split(dim " " kv " " kv " " dim " " hid " " hid " " dim, dout, " ")
      split(dim " " dim " " dim " " dim " " dim " " dim " " hid, din, " ")
      for (i = 1; i <= 7; i++) { DO[nm[i]] = dout[i]; DI[nm[i]] = din[i] }
      for (i = 1; i <= 7; i++) {
        n = dout[i] * din[i]; W0 += n; S0 += n * nominal(din[i]); T0 += n * stored(din[i])
      }
    }
    match($0, /blk\.[0-9]+\.[a-z_]+/) {
      name = substr($0, RSTART, RLENGTH); sub(/^blk\.[0-9]+\./, "", name)
      cur = DO[name] * DI[name]; W += cur; S += cur * nominal(DI[name]); T += cur * stored(DI[name])
    }
    /outliers in float/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "outliers") OUT += $i }
    END {
      if (W == 0) { W = W0; S = S0; T = T0 }       # no progress lines: from the header alone
      if (kind == "higgs") printf "%.3f (nominal %.3f)\n", T / W, S / W
      else if (kind == "easyquant") printf "%.3f\n", (S + 48 * OUT) / W
      else printf "%.3f\n", S / W
    }' "$5"
}

# One run: quantize to a float checkpoint, evaluate on both texts, record a row.
run() {  # model label method bits group bpw_kind [quantize flags...]
  local model=$1 label=$2 method=$3 bits=$4 group=$5 kind=$6
  shift 6
  local mp tag gname gflag=()
  mp=$(model_path "$model")
  if [ "$group" = h ]; then gname=h; else gname=$([ "$group" = 0 ] && echo channel || echo "g$group"); gflag=(--group "$group"); fi
  tag=${model}_${method}_${bits}bit_$gname
  [[ " $* " == *" --calib "* ]] && tag=${model}_${method}-text_${bits}bit_$gname
  if [ ! -s "$O/$tag.row" ]; then
    if ! "$B/cdquant" quantize --model "$mp" --out "$O/$tag.bin" --format float --method "$method" \
        --bits "$bits" "${gflag[@]}" "$@" > "$O/$tag.log" 2>&1; then
      skip "$model" "$label" "$bits" "$gname" "$(grep -m1 '^error' "$O/$tag.log" || tail -1 "$O/$tag.log")"
      rm -f "$O/$tag.bin"
      return 0
    fi
    local qs cs
    qs=$(sed -n 's/^quantized .* in \([0-9.]*\)s (.*/\1/p' "$O/$tag.log")
    cs=$(sed -n 's/^note: self-calibration: .* in \([0-9.]*\)s$/\1/p' "$O/$tag.log")
    for t in sotu stories; do
      local text=data/sotu-test.txt
      [ $t = stories ] && text=$(stories_path "$model")
      "$B/cdquant" eval --model "$mp" --quantized "$O/$tag.bin" --text "$text" --ctx 256 \
        --max-windows "$WINDOWS" --json --quiet > "$O/$tag.$t.json"
    done
    rm -f "$O/$tag.bin"
    # quant_s selfcal_s float_ppl_sotu ppl_sotu kl_sotu float_ppl_stories ppl_stories kl_stories
    printf '%s\t%s\t%s\t%s\n' "$qs" "${cs:--}" "$(jfields "$O/$tag.sotu.json")" \
      "$(jfields "$O/$tag.stories.json")" > "$O/$tag.row"
  fi
  # model label bits group bits/weight, then the row
  local row
  row=$(printf '%s\t%s\t%s\t%s\t%s\t%s' "$model" "$label" "$bits" "$gname" \
    "$(bpw "$mp" "$bits" "$([ "$group" = h ] && echo 0 || echo "$group")" "$kind" "$O/$tag.log")" \
    "$(cat "$O/$tag.row")")
  echo "$row" >> "$O/rows.tsv"
  echo "$tag $(tr '\t' ' ' <<< "$row")"
}

jfields() {  # eval json -> float ppl, quantized ppl, KL (tab-separated)
  { grep -o '"ppl":[^,}]*' "$1"; grep -o '"kl":[^,}]*' "$1"; } | cut -d: -f2 | paste -sd '\t'
}

if [ ! -s data/babyllama-stories-test.txt ] && [[ " $MODELS " == *" babyllama "* ]]; then
  "$B/cdquant" generate --model "$(model_path babyllama)" --samples 400 --max-tokens 255 \
    --seed 2 --quiet --out data/babyllama-stories-test.txt
fi
[ -s data/stories-test.txt ] ||
  { echo "datafree_table: run scripts/gguf_table.sh first (it writes data/stories-*.txt)" >&2; exit 1; }

for model in $MODELS; do
  for bits in $BITS; do
    for group in 0 32; do
      run $model RTN rtn $bits $group int
      run $model HQQ hqq $bits $group hqq
      if [ $group = 0 ]; then
        run $model EasyQuant easyquant $bits 0 easyquant
      else
        run $model EasyQuant easyquant $bits $group easyquant   # refused: per channel only
      fi
      run $model GPTQ-self gptq $bits $group int "${CAL[@]}"
      run $model CD-self cd $bits $group int "${CAL[@]}"
      run $model CD-text cd $bits $group int "${CAL[@]}" --calib data/sotu-calib.txt
    done
    run $model "HIGGS p=1" higgs $bits h higgs
    run $model "HIGGS p=2" higgs-p2 $bits h higgs
    if [ $HAVE_HIGGS_CD = 1 ]; then
      run $model HIGGS+GPTQ-self higgs-gptq $bits h higgs "${CAL[@]}"
      run $model HIGGS+CD-self higgs-cd $bits h higgs "${CAL[@]}"
    else
      skip $model HIGGS+GPTQ-self $bits h "higgs-gptq is not a method of this build"
      skip $model HIGGS+CD-self $bits h "higgs-cd is not a method of this build"
    fi
  done
done

# The markdown tables, one per model, from rows.tsv.
awk -F'\t' -v windows="$WINDOWS" '
  function p(x) { return x >= 1000 ? sprintf("%.1f", x) : (x >= 100 ? sprintf("%.2f", x) : sprintf("%.3f", x)) }
  function k(x) { return x >= 1 ? sprintf("%.3f", x) : (x >= 0.1 ? sprintf("%.4f", x) : sprintf("%.5f", x)) }
  $1 != model {
    if (model != "") print ""
    model = $1
    printf "%s, %d windows x 256 tokens of each text; float ppl: sotu-test %s, own stories %s\n\n", model, windows, p($8), p($11)
    print "| method | bits | group | bits/weight | quantize s (self-calib. s) | sotu-test ppl / KL | own stories ppl / KL |"
    print "|---|---|---|---|---|---|---|"
  }
  { printf "| %s | %s | %s | %s | %s%s | %s / %s | %s / %s |\n", $2, $3, ($4 == "h" ? "Hadamard" : $4), $5, $6, ($7 == "-" ? "" : " (" $7 ")"), p($9), k($10), p($12), k($13) }
' "$O/rows.tsv" | tee "$O/table.md"
if [ -s "$O/skipped.txt" ]; then
  echo
  awk -F'\t' '{ printf "skipped: %s %s %s-bit %s: %s\n", $1, $2, $3, $4, $5 }' "$O/skipped.txt"
fi
