#!/usr/bin/env bash
# Build the paper: regenerate paper/gen/ from the committed measurements in
# results/ (e2elab paper), then typeset paper/paper.pdf reproducibly.
#
#   bash scripts/paper.sh            # set-up, e2elab paper, PDF
#   bash scripts/paper.sh --no-gen   # PDF from the paper/gen/ already there
#
# Reproducible output: SOURCE_DATE_EPOCH is the date of the measured run
# (results/provenance.csv), FORCE_SOURCE_DATE=1 makes pdfTeX use it for every
# date it writes, and paper.tex sets \pdftrailerid{} (no random file id); the
# same inputs and TeX installation give the same bytes. The hash of the
# generated inputs (paper/gen/inputs.sha256) is in the PDF's keywords,
# "gen:<hash>", through paper/gen/hash.tex.
set -euo pipefail
cd "$(dirname "$0")/.."

gen=1
for arg in "$@"; do
  case "$arg" in
    --no-gen) gen=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "paper: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh

if [ "$gen" -eq 1 ]; then
  export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
  cargo run --release -p e2elab -- paper --results results --out paper/gen
fi

for f in numbers.tex hash.tex inputs.sha256; do
  if [ ! -f "paper/gen/$f" ]; then
    echo "paper: paper/gen/$f is missing (run without --no-gen)" >&2
    exit 1
  fi
done

# The date of the measured run, else a fixed one.
run_date="$(awk -F, '$1 == "date" { print $2; exit }' results/provenance.csv 2>/dev/null || true)"
if [ -n "$run_date" ] && epoch="$(date -u -d "$run_date" +%s 2>/dev/null)"; then
  export SOURCE_DATE_EPOCH="$epoch"
else
  export SOURCE_DATE_EPOCH=1767225600 # 2026-01-01T00:00:00Z
fi
export FORCE_SOURCE_DATE=1
export TZ=UTC

cd paper
# From clean auxiliary files, so that the result does not depend on a
# previous build.
rm -f paper.aux paper.bbl paper.blg paper.log paper.out paper.fls \
  paper.fdb_latexmk paper.pdf
latexmk -pdf -interaction=nonstopmode -halt-on-error -file-line-error \
  -silent paper.tex >/dev/null 2>&1 || {
  echo "paper: LaTeX failed; the end of paper/paper.log:" >&2
  tail -n 40 paper.log >&2
  exit 1
}

# Everything that LaTeX could not resolve is an error here: an undefined
# reference or citation means a stale or incomplete gen/ or refs.bib.
if grep -E "LaTeX Warning: (Reference|Citation) .* undefined|There were undefined references" paper.log >&2; then
  echo "paper: undefined references or citations (see above)" >&2
  exit 1
fi

hash="$(awk 'NR == 1 { print $1 }' gen/inputs.sha256)"
pages="$(sed -n 's/^Output written on paper\.pdf (\([0-9]*\) pages.*/\1/p' paper.log)"
echo "paper: paper/paper.pdf, ${pages:-?} pages, inputs gen:${hash}" >&2
