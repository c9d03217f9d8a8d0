#!/usr/bin/env bash
# Seed corpora for the fuzz harnesses, from files cdquant itself writes for stories260K
# (../shared/models): GGUF files of several types, GPTQ checkpoints (their model.safetensors
# for fuzz_safetensors, config.json + model.safetensors packed for fuzz_gptq), llama2.c
# checkpoints (the source and a quantized float one) and tokenizers (tok512.bin, tok105.bin).
# cdquant writes no tokenizer.json, so fuzz_hf_tokenizer starts from the small files committed
# in fuzz/seeds/hf_tokenizer. With the fuzz build's make_tiny_model, the same files of a tiny
# random checkpoint are added (a few KB each: far more mutations per second).
# Usage: bash fuzz/make_corpus.sh BUILD_DIR OUT_DIR      (BUILD_DIR holds the cdquant binary)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: make_corpus.sh BUILD_DIR OUT_DIR}
out=${2:?usage: make_corpus.sh BUILD_DIR OUT_DIR}
cdquant="$build/cdquant"
models=${CDQUANT_MODELS:-../shared/models}
src="$models/stories260K.bin"
[ -f "$src" ] || { echo "make_corpus: $src not found (set CDQUANT_MODELS)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cdq-corpus-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"/{fuzz_gguf,fuzz_safetensors,fuzz_llama2c,fuzz_llama2c_tokenizer,fuzz_hf_tokenizer,fuzz_gptq}

q() { "$cdquant" quantize --model "$src" --quiet "$@" >/dev/null; }

# Methods that read no H skip calibration, so these need no text.
for t in F32 Q8_0 Q4_0 Q4_K_M Q2_K; do
  q --method rtn --format gguf --type "$t" --no-importance --out "$work/s-$t.gguf"
  cp "$work/s-$t.gguf" "$out/fuzz_gguf/stories260K-$t.gguf"
done
q --method rtn --bits 4 --group 32 --out "$work/s-rtn.bin"
cp "$src" "$out/fuzz_llama2c/stories260K.bin"
cp "$work/s-rtn.bin" "$out/fuzz_llama2c/stories260K-rtn4g32.bin"
cp "$models/tok512.bin" "$out/fuzz_llama2c_tokenizer/"
[ -f "$models/babyllama-tok105/tok105.bin" ] && cp "$models/babyllama-tok105/tok105.bin" \
  "$out/fuzz_llama2c_tokenizer/"

# fuzz_gptq's input: u32 little-endian length of config.json, config.json, model.safetensors.
le32() { printf "\\$(printf %03o $(($1 & 255)))\\$(printf %03o $((($1 >> 8) & 255)))"\
"\\$(printf %03o $((($1 >> 16) & 255)))\\$(printf %03o $((($1 >> 24) & 255)))"; }
for cfg in "4 32" "8 0" "2 0"; do
  set -- $cfg
  d="$work/gptq-b$1-g$2"
  q --method rtn --format gptq --bits "$1" --group "$2" --out "$d"
  cp "$d/model.safetensors" "$out/fuzz_safetensors/stories260K-gptq-b$1-g$2.safetensors"
  { le32 "$(stat -c %s "$d/config.json")"; cat "$d/config.json" "$d/model.safetensors"; } \
    > "$out/fuzz_gptq/stories260K-gptq-b$1-g$2.bin"
done

# Small seeds: a tiny random checkpoint (fuzz/make_tiny_model.cpp, written by the library's
# llama2.c writer, tok105's vocabulary) and what cdquant makes of it: a few KB each.
if [ -x "$build/fuzz/make_tiny_model" ] && [ -f "$models/babyllama-tok105/tok105.bin" ]; then
  mkdir -p "$work/tiny"
  "$build/fuzz/make_tiny_model" "$work/tiny/model.bin" 105
  cp "$models/babyllama-tok105/tok105.bin" "$work/tiny/tokenizer.bin"
  src="$work/tiny/model.bin"
  cp "$src" "$out/fuzz_llama2c/tiny.bin"
  for t in F32 F16 Q8_0; do
    q --method rtn --format gguf --type "$t" --no-importance --out "$work/tiny-$t.gguf"
    cp "$work/tiny-$t.gguf" "$out/fuzz_gguf/tiny-$t.gguf"
  done
  for cfg in "4 0" "8 16" "2 0"; do
    set -- $cfg
    d="$work/tiny-gptq-b$1-g$2"
    q --method rtn --format gptq --bits "$1" --group "$2" --out "$d"
    cp "$d/model.safetensors" "$out/fuzz_safetensors/tiny-gptq-b$1-g$2.safetensors"
    { le32 "$(stat -c %s "$d/config.json")"; cat "$d/config.json" "$d/model.safetensors"; } \
      > "$out/fuzz_gptq/tiny-gptq-b$1-g$2.bin"
  done
fi
cp fuzz/seeds/hf_tokenizer/* "$out/fuzz_hf_tokenizer/"
echo "make_corpus: seeds in $out: $(find "$out" -type f | wc -l) files"
