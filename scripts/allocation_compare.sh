#!/bin/bash
# Markdown table of one model's CSV from scripts/allocation_table.sh: every allocated CD file
# against the smallest uniform CD file and the smallest llama.cpp mix (CD) of the same or
# larger size, with its predicted KL increase (weight-space and H-weighted t^2).
# usage: bash scripts/allocation_compare.sh OUT_DIR/MODEL.csv
set -euo pipefail
awk '
NR == 1 { next }
$2 == "uniform_cd" { nu++; ub[nu] = $4; ut[nu] = $3; uk[nu] = $7 }
$2 == "mix_cd" { nm++; mb[nm] = $4; mt[nm] = $3; mk[nm] = $7 }
$2 == "alloc_cd" { na++; ab[na] = $4; at[na] = substr($1, 7); ak[na] = $7; ae[na] = $8; ap[na] = $6;
                   aw[na] = $9; ao[na] = $10 }
function best(n, b, t, k, size,    i, j) {  # the smallest file of size >= size
  j = 0
  for (i = 1; i <= n; i++) if (b[i] >= size && (j == 0 || b[i] < b[j])) j = i
  return j
}
END {
  print "| budget | file bytes | ppl | KL (measured) | predicted: weight t^2 / H-weighted t^2 | uniform CD >= size: KL | mix CD >= size: KL |"
  print "|---|---|---|---|---|---|---|"
  for (a = 1; a <= na; a++) {
    u = best(nu, ub, ut, uk, ab[a]); m = best(nm, mb, mt, mk, ab[a])
    us = u ? sprintf("%s (%d): %.5f %s", ut[u], ub[u], uk[u], ak[a] < uk[u] ? "alloc lower" : "**alloc higher**") : "-"
    ms = m ? sprintf("%s (%d): %.5f %s", mt[m], mb[m], mk[m], ak[a] < mk[m] ? "alloc lower" : "**alloc higher**") : "-"
    printf "| %s | %d | %.4f | %.5f +- %.5f | %.5f / %.5f | %s | %s |\n", at[a], ab[a], ap[a], ak[a], ae[a], aw[a], ao[a], us, ms
  }
}' "$1"
