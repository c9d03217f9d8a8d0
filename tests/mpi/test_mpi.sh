#!/usr/bin/env bash
# MPI tests (registered only with -DCDQ_MPI=ON): `mpirun -n R cdquant quantize` on one machine
# (loopback) must write the very bytes one process writes, and a failing rank must end the run
# with its rank and message instead of leaving the others waiting.
#
#   test_mpi.sh CDQUANT SHARED_DIR CASE
#   CASE: identical METHOD FORMAT [extra quantize flags...] | failing-rank | mismatched-args
#
# The windows (10 of 32 tokens, 2 per forward chunk: 5 leaves of the H tree) are shared out
# unevenly over 2 and 3 ranks (2+3 and 1+2+2 leaves). Every run uses the same 2 OpenMP and BLAS
# threads per process, so only the number of processes differs from the one-process run.
set -euo pipefail
cli=$1 shared=$2 case=$3
shift 3
model=$shared/models/stories260K.bin
calib=$shared/data/tinyshakespeare.txt  # always beside the checkout (data/ may not be fetched)
tmp=$(mktemp -d /tmp/cdq-mpi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
mpi() { local n=$1; shift; timeout 300 mpirun -n "$n" --oversubscribe --bind-to none "$@"; }
common=(--model "$model" --calib "$calib" --nsamples 10 --seqlen 32 --chunk-tokens 64 --quiet)

case $case in
  identical)
    method=$1 format=$2
    shift 2
    flags=("${common[@]}" --method "$method" --format "$format" "$@")
    # The same output name in each run's directory (GGUF stores the name as general.name).
    mkdir -p "$tmp/one" "$tmp/r2" "$tmp/r3"
    "$cli" quantize "${flags[@]}" --out "$tmp/one/m" >/dev/null
    for n in 2 3; do
      mpi "$n" "$cli" quantize "${flags[@]}" --out "$tmp/r$n/m" >"$tmp/r$n.log" 2>&1 ||
        { cat "$tmp/r$n.log"; exit 1; }
      grep -q "$n ranks" "$tmp/r$n.log" || { echo "no '$n ranks' line"; cat "$tmp/r$n.log"; exit 1; }
      # A file (GGUF) or a directory (GPTQ checkpoint): every file byte for byte.
      diff -r "$tmp/one" "$tmp/r$n" || { echo "FAIL: $n ranks differ from one process"; exit 1; }
      echo "$method/$format: $n ranks byte-identical to one process"
    done
    ;;
  failing-rank)
    # Rank 1 is given a model that does not exist: it must say so with its rank, and the run
    # must end (rank 0 would otherwise wait for rank 1's H forever).
    set +e
    mpi 2 bash -c 'm=$1; shift; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && m=$m.missing
                   exec "$@" --model "$m"' _ "$model" "$cli" quantize "${common[@]:2}" \
      --method gptq --format gptq --out "$tmp/fail" >"$tmp/fail.log" 2>&1
    rc=$?
    set -e
    cat "$tmp/fail.log"
    [ "$rc" -ne 0 ] || { echo "FAIL: exit status 0"; exit 1; }
    grep -q "rank 1 of 2: error: .*stories260K.bin.missing" "$tmp/fail.log" ||
      { echo "FAIL: no rank-1 error naming the missing model"; exit 1; }
    ;;
  mismatched-args)
    # Rank 1 samples other windows (another seed): caught before any work, not a wrong file.
    set +e
    mpi 2 bash -c 's=1; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && s=2; exec "$@" --seed "$s"' _ \
      "$cli" quantize "${common[@]}" --method gptq --format gptq --out "$tmp/mm" >"$tmp/mm.log" 2>&1
    rc=$?
    set -e
    cat "$tmp/mm.log"
    [ "$rc" -ne 0 ] || { echo "FAIL: exit status 0"; exit 1; }
    grep -q "rank 1 of 2: error: rank 1's calibration windows or settings differ" "$tmp/mm.log" ||
      { echo "FAIL: no mismatch error from rank 1"; exit 1; }
    ;;
  *)
    echo "unknown case $case"
    exit 2
    ;;
esac
