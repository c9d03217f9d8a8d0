#!/usr/bin/env bash
# Fetches the real llama.cpp engine that npm ships prebuilt, for the engine check of the test
# suite (tests/engine) and scripts/vs_llama_quantize.sh. Nothing is downloaded beyond the two npm
# packages and nothing is built: the packages are installed with --ignore-scripts and
# NODE_LLAMA_CPP_SKIP_DOWNLOAD=true.
#
# Path conventions (other scripts and CMake rely on them):
#   .engine/                          gitignored; everything below is created by this script
#   .engine/node_modules/             npm prefix (node-llama-cpp@3.22.1, @node-llama-cpp/linux-x64)
#   .engine/lib/                      symlink to the shipped bins/linux-x64: libllama.v0.5.0.so,
#                                     libggml.v0.5.0.so, libggml-base.so, libggml-cpu-*.so
#   .engine/include/llama.h           from llama/gitRelease.bundle (llama.cpp tag v0.5.0)
#   .engine/include/ggml*.h, gguf.h   ggml/include/*.h of the same commit
#   .engine/src/ggml-cpu/             ggml/src/ggml-cpu of that commit (read-only reference:
#                                     vec_dot_type per weight type; not compiled)
#   .engine/VERSION                   one line: package versions, llama.cpp tag and commit
# Usage: bash scripts/fetch_engine.sh        (idempotent; exits 0 with a message when npm or the
#                                             registry is unavailable, so CI skips the check)
set -euo pipefail
cd "$(dirname "$0")/.."

NLC=node-llama-cpp@3.22.1
BIN=@node-llama-cpp/linux-x64@3.22.1
E=.engine
[ -s "$E/VERSION" ] && [ -e "$E/lib/libllama.v0.5.0.so" ] && [ -s "$E/include/llama.h" ] && exit 0

if ! command -v npm >/dev/null 2>&1 || ! command -v git >/dev/null 2>&1; then
  echo "fetch_engine: npm or git missing; the engine check will be skipped" >&2
  exit 0
fi
mkdir -p "$E"
echo "fetch_engine: installing $NLC and $BIN from npm (no scripts, no download)"
if ! NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --ignore-scripts --no-audit --no-fund \
  --no-save --prefix "$E" "$NLC" "$BIN" >"$E/npm.log" 2>&1; then
  echo "fetch_engine: npm install failed (see $E/npm.log); the engine check will be skipped" >&2
  exit 0
fi
bins="$E/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
bundle="$E/node_modules/node-llama-cpp/llama/gitRelease.bundle"
[ -e "$bins/libllama.v0.5.0.so" ] && [ -s "$bundle" ] || {
  echo "fetch_engine: unexpected layout of the npm packages" >&2
  exit 1
}
ln -sfn "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64" "$E/lib"

# The bundle holds one commit (HEAD) of llama.cpp; take only the headers and the CPU sources.
commit=$(git bundle list-heads "$bundle" | awk '$2 == "HEAD" {print $1}')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git init -q --bare "$tmp/repo"
git -C "$tmp/repo" fetch -q "$PWD/$bundle" HEAD
rm -rf "$E/include" "$E/src"
mkdir -p "$E/include" "$E/src"
git -C "$tmp/repo" archive "$commit" include/llama.h ggml/include ggml/src/ggml-cpu \
  ggml/src/ggml-common.h ggml/src/ggml-quants.c ggml/src/ggml-quants.h | tar -x -C "$tmp"
cp "$tmp/include/llama.h" "$tmp"/ggml/include/*.h "$E/include/"
cp -r "$tmp/ggml/src/ggml-cpu" "$E/src/"
cp "$tmp/ggml/src/ggml-common.h" "$tmp/ggml/src/ggml-quants.c" "$tmp/ggml/src/ggml-quants.h" "$E/src/"
tag=$(node -e 'console.log(require(process.argv[1]).tag)' \
  "$PWD/$E/node_modules/node-llama-cpp/llama/llama.cpp.info.json" 2>/dev/null || echo unknown)
echo "$NLC $BIN llama.cpp $tag commit $commit" >"$E/VERSION"
echo "fetch_engine: $(cat "$E/VERSION")"
