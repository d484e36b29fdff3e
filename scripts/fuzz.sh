#!/usr/bin/env bash
# Run berth's coverage-guided fuzz targets (fuzz/, cargo-fuzz + libFuzzer),
# each for FUZZ_SECONDS, one after the other, and write what they reached
# (executions, coverage, features, corpus size) to fuzz/RESULTS.md.
#
#   scripts/fuzz.sh                  # every target, FUZZ_SECONDS each (60)
#   FUZZ_SECONDS=600 scripts/fuzz.sh manifest rpc
#   FUZZ_NO_BUILD=1 scripts/fuzz.sh  # run the binaries built last time
#
# The committed seeds (fuzz/corpus/TARGET) are passed as a second, read-only
# corpus directory: what libFuzzer adds goes to fuzz/work/corpus/TARGET
# (gitignored), crashes to fuzz/artifacts/TARGET. Exits 1 when a target
# crashed; the other targets still run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${FUZZ_SECONDS:-60}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
ALL_TARGETS=(manifest manifest_includes rpc http config compose)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
# No ASan: the workspace denies unsafe code, so what the targets look for is
# panics (debug assertions and overflow checks on: -a) and broken
# invariants; ASan would halve the executions for nothing it could see.
FLAGS=(--sanitizer none --debug-assertions)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    echo "cargo-fuzz needs a nightly toolchain ($TOOLCHAIN is not installed)" >&2
    exit 2
fi

dict_of() {
    case "$1" in
        manifest | manifest_includes) echo "$ROOT/fuzz/dict/manifest.dict" ;;
        *) echo "$ROOT/fuzz/dict/$1.dict" ;;
    esac
}

cd fuzz
# One build of every target, then the binaries are run directly (`cargo
# fuzz run` would check the build again before each target).
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    cargo "+$TOOLCHAIN" fuzz build "${FLAGS[@]}"
fi
BIN_DIR="target/$(rustc -vV | sed -n 's/^host: //p')/release"
mkdir -p work/logs
rows=()
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "work/corpus/$t" "artifacts/$t"
    log="work/logs/$t.log"
    echo "== $t: ${SECONDS_EACH}s"
    status=ok
    if ! "$BIN_DIR/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$SECONDS_EACH" \
        -timeout=60 -dict="$(dict_of "$t")" -print_final_stats=1 \
        "work/corpus/$t" "corpus/$t" >"$log" 2>&1; then
        status="CRASH: $(grep -o 'artifacts/[^ ]*' "$log" | tail -n 1 || echo "see fuzz/$log")"
        failed=1
    fi
    # libFuzzer's last status line: `#N DONE cov: X ft: Y corp: A/B ...`
    # (`#N` of a crash's last `pulse`/`NEW` line when it did not finish).
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    execs=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "$log" | grep -o '[0-9]*$' || true)
    execs=${execs:-$(echo "$last" | sed -E 's/^#([0-9]+).*/\1/')}
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+' || echo "?")
    ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+' || echo "?")
    corp=$(echo "$last" | grep -oE 'corp: [0-9]+/[0-9a-zA-Z]+' | sed 's/corp: //' || echo "?")
    per_s=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "   $last"
    rows+=("| \`$t\` | ${SECONDS_EACH} | ${execs:-?} | ${per_s} | ${cov} | ${ft} | ${corp} | ${status} |")
done

{
    echo "# Fuzzing results"
    echo
    echo "Written by \`make fuzz\` (\`scripts/fuzz.sh\`) on $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)'),"
    echo "$(rustup run "$TOOLCHAIN" rustc --version), \`--sanitizer none --debug-assertions\`."
    echo "cov = code edges covered, ft = libFuzzer features, corpus = entries/bytes"
    echo "at the end (seeds included)."
    echo
    echo "| target | seconds | executions | exec/s | cov | ft | corpus | result |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} >"$ROOT/fuzz/RESULTS.md"
echo "wrote fuzz/RESULTS.md"
exit "$failed"
