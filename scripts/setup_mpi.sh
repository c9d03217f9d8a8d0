#!/usr/bin/env bash
# The MPI build (optional: one process needs none of this): OpenMPI from Debian and cdquant
# built with -DCDQ_MPI=ON in build-mpi, the CLI alone (no tests or benchmarks of the main
# suite: `ctest --test-dir build-mpi` runs the MPI tests only).
# Usage: bash scripts/setup_mpi.sh       (idempotent; safe to re-run)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(libopenmpi-dev openmpi-bin)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup_mpi: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "setup_mpi: building (build-mpi/)"
cmake -S . -B build-mpi -G Ninja -DCMAKE_BUILD_TYPE=Release -DCDQ_MPI=ON -DCDQ_TESTS=OFF \
  -DCDQ_BENCH=OFF >/dev/null
cmake --build build-mpi -j "$(nproc)"
