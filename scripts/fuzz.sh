#!/usr/bin/env bash
# The fuzzing campaign (README.md#fuzzing). libFuzzer through cargo-fuzz on
# the stable toolchain (`-s none`: AddressSanitizer needs -Zsanitizer, a
# nightly flag). Targets: harness/src/fuzz.rs.
#
#   scripts/fuzz.sh build               build every target (fuzz/target/)
#   scripts/fuzz.sh campaign [RUNS] [T] fuzz each target (or T) for RUNS
#                                       executions (default 10,000,000), merge
#                                       the new corpus into fuzz/corpus/<t>/ and
#                                       write fuzz/stats/<t>.json
#   scripts/fuzz.sh results             results/fuzz.json from fuzz/stats and
#                                       fuzz/findings.json
#   scripts/fuzz.sh ci [SECONDS]        replay seeds, corpora and regressions
#                                       under libFuzzer, then fuzz each target
#                                       SECONDS (default 20); any crash fails
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
TARGETS=(stanza esessions_handshake esessions_content jep0027 ox rfc3923 otr xmldsig)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$TARGET_DIR/x86_64-unknown-linux-gnu/release
MAX_LEN=16384   # e2elab::fuzz::MAX_SEED

build() {
    if ! command -v cargo-fuzz >/dev/null; then
        cargo install cargo-fuzz --locked --version 0.13.2
    fi
    CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo fuzz build -s none
    # What the binaries were built from, for the campaign's records.
    echo "$(git rev-parse HEAD) $([ -z "$(git status --porcelain -- .. ':!../results' ':!.')" ] && echo clean || echo dirty)" >"$TARGET_DIR/built-at"
}

dirs_of() { # the input directories of target $1 that exist
    local t=$1 d
    for d in seeds corpus regressions; do
        [ -d "$d/$t" ] && echo "$d/$t"
    done
}

campaign() {
    local runs=${1:-10000000} only=${2:-}
    mkdir -p stats corpus artifacts
    for t in "${TARGETS[@]}"; do
        [ -n "$only" ] && [ "$only" != "$t" ] && continue
        local work="corpus-work/$t" log="stats/$t.log"
        rm -rf "$work"; mkdir -p "$work" "corpus/$t" "artifacts/$t"
        local start end rev dirty
        start=$(date +%s)
        # The source the binaries were built from (scripts/fuzz.sh build).
        rev=$(cut -d' ' -f1 "$TARGET_DIR/built-at" 2>/dev/null || echo unknown)
        dirty=$([ "$(cut -d' ' -f2 "$TARGET_DIR/built-at" 2>/dev/null)" = clean ] && echo false || echo true)
        # A crash stops the run (its input is saved to artifacts/<t>/); it is
        # reproduced, fixed, kept as a regression (fuzz/regressions/<t>/,
        # fuzz/findings.json) and the target's campaign is run again.
        # JOBS processes share the working corpus, RUNS/JOBS executions each.
        local jobs=${JOBS:-1} j
        : >"$log"
        for j in $(seq 1 "$jobs"); do
            "$BIN/$t" -runs=$((runs / jobs)) -max_len=$MAX_LEN -dict="dict/$t.dict" \
                -artifact_prefix="artifacts/$t/" -timeout=10 -rss_limit_mb=4096 \
                -print_final_stats=1 "$work" $(dirs_of "$t") >"$log.$j" 2>&1 &
        done
        wait || true
        for j in $(seq 1 "$jobs"); do cat "$log.$j" >>"$log"; rm -f "$log.$j"; done
        end=$(date +%s)
        "$BIN/$t" -merge=1 -max_len=$MAX_LEN "corpus/$t" "$work" >>"$log" 2>&1
        # Coverage of the merged corpus, as committed.
        "$BIN/$t" -runs=0 -max_len=$MAX_LEN "corpus/$t" >"$log.cov" 2>&1 || true
        python3 - "$t" "$log" "$start" "$end" "$runs" "$rev" "$dirty" <<'EOF'
import json, re, sys, os
t, log, start, end, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
text = open(log, errors="replace").read()
def stat(k, agg=sum):
    m = [int(x) for x in re.findall(r"stat::%s:\s+(\d+)" % k, text)]
    return agg(m) if m else None
cov = re.findall(r"INITED cov: (\d+) ft: (\d+)", open(log + ".cov", errors="replace").read())
last = (None,) + cov[-1] if cov else None
crashes = sorted(os.listdir("artifacts/" + t))
rev, dirty = sys.argv[6], sys.argv[7] == "true"
out = {
    "target": t,
    "executions": stat("number_of_executed_units"),
    "runs_asked": runs,
    "seconds": end - start,
    "exec_per_sec": stat("average_exec_per_sec"),
    "coverage_edges": int(last[1]) if last else None,
    "features": int(last[2]) if last else None,
    "corpus_inputs": len(os.listdir("corpus/" + t)),
    "crash_artifacts": crashes,
    "peak_rss_mb": stat("peak_rss_mb", max),
    "processes": len(re.findall(r"stat::number_of_executed_units", text)),
    "built_at": rev,
    "built_dirty": dirty,
    "engine": "libFuzzer (libfuzzer-sys 0.4, cargo-fuzz, -s none)",
}
json.dump(out, open("stats/%s.json" % t, "w"), indent=1)
print(json.dumps(out))
EOF
        rm -rf "$work"
    done
}

results() {
    python3 - <<'EOF'
import json, glob, os
targets = ["stanza", "esessions_handshake", "esessions_content", "jep0027", "ox", "rfc3923", "otr", "xmldsig"]
stats = {}
for t in targets:
    p = "stats/%s.json" % t
    if not os.path.exists(p):
        raise SystemExit("fuzz results: no stats for %s (run scripts/fuzz.sh campaign)" % t)
    stats[t] = json.load(open(p))
findings = json.load(open("findings.json"))
for t, s in stats.items():
    if "built_at" not in s:
        raise SystemExit("fuzz results: stats/%s.json does not say what its binary was built from" % t)
for f in findings:
    if not os.path.exists(f["input"]):
        raise SystemExit("fuzz results: finding input %s is not committed" % f["input"])
out = {
    "schema": "e2elab-fuzz/1",
    "engine": "libFuzzer via cargo-fuzz 0.13 on the stable toolchain, sanitizer none",
    "targets": [dict(stats[t], findings=[f["id"] for f in findings if f["target"] == t],
                     open_findings=[f["id"] for f in findings if f["target"] == t and not f.get("fixed_by")])
                for t in targets],
    "findings": findings,
}
os.makedirs("../results", exist_ok=True)
json.dump(out, open("../results/fuzz.json", "w"), indent=1)
for s in out["targets"]:
    print("%-20s %12s execs %8s s  cov %6s  corpus %5s  findings %s" % (
        s["target"], s["executions"], s["seconds"], s["coverage_edges"], s["corpus_inputs"], s["findings"]))
EOF
}

ci() {
    local secs=${1:-20}
    build
    for t in "${TARGETS[@]}"; do
        mkdir -p "corpus-work/$t"
        # Replay: every committed input once (libFuzzer runs each file given).
        local files
        files=$(find $(dirs_of "$t") -type f | sort)
        echo "$files" | xargs -r "$BIN/$t" -runs=1 -max_len=$MAX_LEN >"corpus-work/$t.replay.log" 2>&1 || {
            tail -40 "corpus-work/$t.replay.log"; echo "fuzz: $t: a committed input fails"; exit 1; }
        # Then a short campaign from the committed corpus.
        "$BIN/$t" -max_total_time="$secs" -max_len=$MAX_LEN -dict="dict/$t.dict" \
            -artifact_prefix="corpus-work/$t-" -timeout=10 -print_final_stats=1 \
            "corpus-work/$t" $(dirs_of "$t") \
            >"corpus-work/$t.log" 2>&1 || {
            tail -40 "corpus-work/$t.log"; echo "fuzz: $t: a crash in the ${secs} s run"; exit 1; }
        echo "fuzz: $t: $(echo "$files" | wc -l) committed inputs replayed, $(grep -o 'stat::number_of_executed_units: [0-9]*' "corpus-work/$t.log" | awk '{print $2}') executions in ${secs} s, no crash"
        rm -rf "corpus-work/$t"
    done
}

case "${1:-}" in
    build) build ;;
    campaign) shift; campaign "$@" ;;
    results) results ;;
    ci) shift; ci "$@" ;;
    *) echo "usage: $0 build|campaign [RUNS] [TARGET]|results|ci [SECONDS]" >&2; exit 2 ;;
esac
