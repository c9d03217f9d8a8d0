#!/bin/bash
# The README's allocation plot from scripts/allocation_table.sh's CSVs: per model, KL from the
# float model (log scale) and perplexity against file bits per linear weight, for uniform types
# (RTN and CD), llama.cpp's mixes (CD) and the allocated CD files. Needs gnuplot
# (apt-get install gnuplot-nox); without it, says so and exits 0.
# usage: bash scripts/allocation_plot.sh OUT_DIR MODEL... (writes OUT_DIR/allocation.png)
set -euo pipefail
O=$1
shift
if ! command -v gnuplot > /dev/null; then
  echo "gnuplot is not installed (apt-get install -y gnuplot-nox): no plot"
  exit 0
fi
models=()
for m in "$@"; do [ -s "$O/$m.csv" ] && models+=("$m"); done
[ ${#models[@]} -gt 0 ] || { echo "no CSV under $O"; exit 1; }
# One data file per model and kind: bits_per_weight ppl kl.
for m in "${models[@]}"; do
  for k in uniform_rtn uniform_cd mix_cd alloc_cd; do
    awk -v k=$k 'NR > 1 && $2 == k {print $5, $6, $7}' "$O/$m.csv" | sort -n > "$O/$m.$k.dat"
  done
done
{
  echo "set terminal pngcairo size 1200,$((420 * ${#models[@]})) font 'sans,10'"
  echo "set output '$O/allocation.png'"
  echo "set multiplot layout ${#models[@]},2"
  echo "set grid; set key top right; set xlabel 'file bits per linear weight (8 x file bytes / linear weights)'"
  for m in "${models[@]}"; do
    for panel in kl ppl; do
      if [ $panel = kl ]; then
        echo "set logscale y; set ylabel 'KL(float || quantized), nats'; col=3"
        echo "set title '$m: KL divergence from the float model'"
      else
        echo "unset logscale y; set ylabel 'perplexity'; col=2"
        echo "set title '$m: perplexity on stories the float model wrote'"
      fi
      echo "plot '$O/$m.uniform_rtn.dat' u 1:col w lp pt 6 t 'uniform RTN', \\"
      echo "     '$O/$m.uniform_cd.dat' u 1:col w lp pt 7 t 'uniform CD', \\"
      echo "     '$O/$m.mix_cd.dat' u 1:col w p pt 5 ps 1.2 t 'llama.cpp mixes, CD', \\"
      echo "     '$O/$m.alloc_cd.dat' u 1:col w lp pt 9 ps 1.2 t 'allocated, CD'"
    done
  done
  echo "unset multiplot"
} > "$O/allocation.gp"
gnuplot "$O/allocation.gp"
echo "wrote $O/allocation.png"
