#!/usr/bin/env bash
# The fuzzing campaign: builds the libFuzzer harnesses (build-fuzz/, clang-14, ASan + UBSan),
# makes their seed corpora from files cdquant writes for stories260K (fuzz/make_corpus.sh),
# then runs each harness for SECONDS (default 1200) and prints one line per harness:
#   fuzz_gguf: 123456 inputs, 0 crashes
# A crash (sanitizer report, uncaught exception, out-of-memory, timeout) stops libFuzzer; the
# harness is restarted until its time is spent, so every crash of the campaign is kept. Crash
# inputs go to build-fuzz/crashes/<harness>/, logs to build-fuzz/logs/, new corpus entries to
# build-fuzz/corpus-run/<harness>/. Exit status 1 when any harness crashed.
# Usage: bash scripts/fuzz.sh [SECONDS] [HARNESS...]
#   CDQ_FUZZ_JOBS=N   run N harnesses at once (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-1200}
shift || true
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(fuzz_gguf fuzz_safetensors fuzz_llama2c fuzz_llama2c_tokenizer
                                    fuzz_hf_tokenizer fuzz_gptq)
jobs=${CDQ_FUZZ_JOBS:-1}
B=build-fuzz

if ! command -v clang++-14 >/dev/null 2>&1 || ! dpkg -s libclang-rt-14-dev >/dev/null 2>&1; then
  echo "fuzz: installing clang-14 libclang-rt-14-dev"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null
fi

echo "fuzz: building $B/"
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
  -DCMAKE_CXX_COMPILER=clang++-14 -DCDQ_FUZZ=ON -DCDQ_TESTS=OFF -DCDQ_BENCH=OFF \
  "${launcher[@]}" >/dev/null
cmake --build "$B" -j "$(nproc)" >"$B/build.log" 2>&1 || { tail -30 "$B/build.log"; exit 1; }

export OMP_NUM_THREADS=1
# Leak checks stay on (libFuzzer reports a leaking input as a crash); UB aborts (built with
# -fno-sanitize-recover), with a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ ! -f "$B/corpus/.done" ]; then
  rm -rf "$B/corpus"
  bash fuzz/make_corpus.sh "$B" "$B/corpus"
  touch "$B/corpus/.done"
fi

# Runs one harness for the campaign's time; writes "<inputs> <crashes>" to $B/logs/<h>.result.
run_harness() {
  local h=$1 crashes_dir="$B/crashes/$1" run_dir="$B/corpus-run/$1"
  mkdir -p "$crashes_dir" "$run_dir" "$B/logs"
  rm -f "$B/logs/$1".*
  local end=$((SECONDS + seconds)) inputs=0 n=0 log
  local before
  before=$(find "$crashes_dir" -type f ! -name "slow-unit-*" | wc -l)
  while :; do
    local left=$((end - SECONDS))
    ((left > 0)) || break
    log="$B/logs/$h.$n.log"
    "$B/fuzz/$h" -max_total_time="$left" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$crashes_dir/" "$run_dir" "$B/corpus/$h" >"$log" 2>&1 || true
    local units
    units=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' |
      tail -1 || true)
    [ -n "$units" ] || units=$(grep -o '^#[0-9]*' "$log" | tr -d '#' | tail -1 || true)
    inputs=$((inputs + ${units:-0}))
    n=$((n + 1))
    # Stop when libFuzzer ended without a crash (its time is up) or after many crashes.
    grep -q -e '==ERROR' -e 'deadly signal' -e 'Test unit written' "$log" || break
    ((n < 50)) || break
  done
  local after
  after=$(find "$crashes_dir" -type f ! -name "slow-unit-*" | wc -l)
  echo "$inputs $((after - before))" >"$B/logs/$h.result"
}

echo "fuzz: ${#harnesses[@]} harnesses x ${seconds} s ($jobs at a time)"
running=0
for h in "${harnesses[@]}"; do
  run_harness "$h" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

status=0
for h in "${harnesses[@]}"; do
  inputs=0 crashes=1  # a harness that left no result did not run
  [ -f "$B/logs/$h.result" ] && read -r inputs crashes <"$B/logs/$h.result"
  echo "$h: $inputs inputs, $crashes crashes"
  ((crashes == 0)) || { status=1; echo "  crash inputs: $B/crashes/$h/"; }
done
exit $status
