#!/usr/bin/env bash
# Valgrind memcheck over every test binary of the OTR adapter (e2elab-otr):
# no invalid read or write, no use of uninitialised memory, no definite leak.
# Exits non-zero on the first error. Used by CI through scripts/test.sh.
#
#   bash crates/otr/valgrind.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
bins=$(cargo test -p e2elab-otr -j2 --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | cut -d'"' -f4)
[ -n "$bins" ] || { echo "no test binaries found" >&2; exit 1; }
for b in $bins; do
  echo "valgrind: $b" >&2
  valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite --track-origins=yes --quiet \
    --suppressions=crates/otr/valgrind.supp \
    "$b" --test-threads=1 -q
done
echo "valgrind: all OTR adapter tests clean" >&2
