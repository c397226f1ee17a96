#!/usr/bin/env bash
# Rebuild the RFM fixtures (test/fixtures/rfm/*.csv) and their golden outputs
# (test/fixtures/rfm/expected/*) with the R reference, then run crosscheck.R; and the segments of the
# oracle shop (test/fixtures/oracle-shop/segments.csv).
#
#   test/r/regenerate.sh           rebuild in place
#   test/r/regenerate.sh --check   rebuild into a temp dir and fail if anything
#                                  differs from the committed files
#
# Needs Rscript (Debian: apt-get install r-base-core).  Optional: r-cran-dplyr,
# which makes crosscheck.R also compare against a dplyr re-implementation.
set -euo pipefail

if ! command -v Rscript >/dev/null 2>&1; then
  echo "regenerate.sh: Rscript not found (install R, e.g. apt-get install r-base-core)" >&2
  exit 127
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
FIX="$ROOT/test/fixtures/rfm"
ANALYSIS_DATE="2026-01-01"
# UTF-8 is required (ids like "ä1"); byte order of ids does not depend on it.
export LC_ALL="${RFM_LOCALE:-C.UTF-8}"

mode="write"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

Rscript "$HERE/make_fixtures.R" "$work"
mkdir -p "$work/expected"
for input in "$work"/*.csv; do
  name="$(basename "$input" .csv)"
  case "$name" in
    customers_*) shape=customers ;;
    *) shape=orders ;;
  esac
  for segments in default rules; do
    Rscript "$HERE/rfm_reference.R" --input "$input" --shape "$shape" \
      --analysis-date "$ANALYSIS_DATE" --segments "$segments" \
      --out "$work/expected/$name.$segments.csv"
  done
done
Rscript "$HERE/crosscheck.R" "$work"

# The segments of the small shop the end-to-end oracle test syncs (test/sync/oracle.test.ts): its input is
# committed as it is (a slice of the example shop), only the segments are rebuilt.
SHOP="$ROOT/test/fixtures/oracle-shop"
shop_out="$(mktemp -d)"
trap 'rm -rf "$work" "$shop_out"' EXIT
Rscript "$HERE/rfm_reference.R" --input "$SHOP/orders.csv" --shape orders \
  --analysis-date "$ANALYSIS_DATE" --segments default --out "$shop_out/segments.csv"

if [[ "$mode" == "check" ]]; then
  if diff -r "$work" "$FIX" >"$work.diff" 2>&1 && diff "$shop_out/segments.csv" "$SHOP/segments.csv" >>"$work.diff" 2>&1; then
    echo "regenerate.sh: committed fixtures and golden outputs are up to date"
    rm -f "$work.diff"
  else
    head -50 "$work.diff" >&2
    rm -f "$work.diff"
    echo "regenerate.sh: test/fixtures/rfm or oracle-shop/segments.csv differs from a fresh rebuild" >&2
    exit 1
  fi
else
  mkdir -p "$FIX"
  rm -f "$FIX"/*.csv
  rm -rf "$FIX/expected"
  cp "$work"/*.csv "$FIX"/
  cp -r "$work/expected" "$FIX/expected"
  cp "$shop_out/segments.csv" "$SHOP/segments.csv"
  echo "regenerate.sh: wrote $(ls "$FIX"/*.csv | wc -l) fixtures and $(ls "$FIX/expected" | wc -l) golden files to ${FIX#"$ROOT"/}"
fi
