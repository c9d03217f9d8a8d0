#!/usr/bin/env bash
# Measures `mpirun -n R cdquant quantize` at R = 1, 2, 3 on this machine with the MPI build
# (bash scripts/setup_mpi.sh) on a random-weight SmolLM2-135M-shaped checkpoint: wall time,
# rank 0's stage seconds and bytes moved, and that every R writes the same bytes.
# Usage: bash scripts/measure_mpi.sh [WORKDIR] [extra quantize flags]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/cdq-mpi}
shift || true
mkdir -p "$work"
calib=data/sotu-calib.txt
[ -s "$calib" ] || bash scripts/fetch_data.sh
[ -d "$work/smol" ] || ./build/bench/make_random_hf --arch smollm2-135m --out "$work/smol"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
flags=(--model "$work/smol" --calib "$calib" --nsamples 8 --seqlen 128 --chunk-tokens 128
       --method gptq --bits 4 --group 128 --format gptq "$@")
for n in 1 2 3; do
  rm -rf "$work/out$n"
  mkdir -p "$work/out$n"
  start=$(date +%s.%N)
  mpirun -n "$n" --oversubscribe --bind-to none ./build-mpi/cdquant quantize "${flags[@]}" \
    --out "$work/out$n/m" >"$work/r$n.log" 2>&1 || { cat "$work/r$n.log"; exit 1; }
  end=$(date +%s.%N)
  printf 'R=%d: wall %.1f s; %s\n' "$n" "$(echo "$end - $start" | bc)" \
    "$(grep -h 'ranks; rank 0' "$work/r$n.log")"
  if [ "$n" != 1 ]; then
    if diff -r "$work/out1" "$work/out$n" >/dev/null; then echo "  output identical to R=1"
    else echo "  OUTPUT DIFFERS FROM R=1"; fi
  fi
done
