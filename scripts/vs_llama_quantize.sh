#!/bin/bash
# cdquant against llama.cpp's own quantizer on stories260K: per type, llama_model_quantize of
# the shipped libllama (tests/engine/engine_quantize, after scripts/fetch_engine.sh) with no
# imatrix and with an importance matrix from the same calibration windows (128 x 256 tokens of
# data/sotu-calib.txt, seed 0: the mean squared inputs of every linear in the float model), and
# cdquant's RTN plain (--method rtn --no-importance) and CD (the default) files, all from the
# F32 GGUF. Prints one line per file: file bytes, whether its tensors are llama.cpp's plain
# bytes, and the engine-faithful eval against the float model on data/sotu-test.txt (--ctx 256,
# the first MAX_WINDOWS windows). Files and JSON under OUT_DIR.
# usage: bash scripts/vs_llama_quantize.sh [BUILD_DIR=build] [OUT_DIR=/tmp/vs-llama] [MAX_WINDOWS=300] [TYPES]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
O=${2:-/tmp/vs-llama}
W=${3:-300}
TYPES=${4:-Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_M}
M=../shared/models/stories260K.bin
EQ=$B/tests/engine_quantize
[ -x "$EQ" ] || { echo "no $EQ: run scripts/fetch_engine.sh, then cmake and build" >&2; exit 1; }
mkdir -p "$O"
CAL=(--nsamples 128 --seqlen 256 --seed 0)
echo "llama.cpp: $(cat .engine/VERSION)"

"$B/cdquant" quantize --model $M --out "$O/f32.gguf" --format gguf --type F32 --method rtn \
  --no-importance --quiet >/dev/null 2>&1

evaluate() {  # tag
  "$B/cdquant" eval --model $M --quantized "$O/$1.gguf" --text data/sotu-test.txt --ctx 256 \
    --max-windows "$W" --quiet --json >"$O/$1.json"
  python3 -c "
import json, sys, os
j = json.load(open('$O/$1.json')); q = j['quantized']
same = json.loads(sys.argv[1]) if sys.argv[1] else None
print('%-22s %9d bytes  ppl %.3f  KL %.5f +- %.5f  top-1 %.4f%s' % ('$1', os.path.getsize('$O/$1.gguf'),
      q['ppl'], q['kl'], q['kl_se'], q['top1'],
      '' if same is None else '  tensors as llama plain: %s' % ('yes' if same['different'] == 0 else
      'no (%d of %d tensors, %d blocks)' % (same['different'], same['tensors'], same['blocks_different']))))
" "${2:-}"
}

for t in $TYPES; do
  "$EQ" quantize "$O/f32.gguf" "$O/${t}_llama.gguf" "$t" >/dev/null
  "$EQ" quantize "$O/f32.gguf" "$O/${t}_llama_imatrix.gguf" "$t" --imatrix data/sotu-calib.txt \
    "${CAL[@]}" >/dev/null
  "$B/cdquant" quantize --model "$O/f32.gguf" --out "$O/${t}_rtn.gguf" --format gguf --type "$t" \
    --method rtn --no-importance --quiet >/dev/null 2>&1
  "$B/cdquant" quantize --model "$O/f32.gguf" --out "$O/${t}_cd.gguf" --format gguf --type "$t" \
    --calib data/sotu-calib.txt "${CAL[@]}" --quiet >/dev/null 2>&1
  evaluate "${t}_llama"
  evaluate "${t}_llama_imatrix"
  same=$("$EQ" compare "$O/${t}_llama.gguf" "$O/${t}_rtn.gguf")
  if [ "$(echo "$same" | python3 -c 'import json,sys; print(json.load(sys.stdin)["different"])')" = 0 ]; then
    cp "$O/${t}_llama.json" "$O/${t}_rtn.json"  # the same tensors: the same figures
    echo "${t}_rtn: the tensors of ${t}_llama, byte for byte"
  else
    evaluate "${t}_rtn" "$same"
  fi
  evaluate "${t}_cd"
done
