#!/usr/bin/env bash
# Property-based fuzzing of the daemon's HTTP API, as a new user would run
# it: schemathesis 4 against the daemon's own /api/openapi.json (bounded to
# a few hundred cases), then a bounded JSON-RPC fuzz (scripts/rpc-fuzz.py,
# hypothesis) over POST /rpc/v1 and a probe of the live stream. Fails on any
# 5xx, any hung connection, any answer the document does not describe, and
# any state change caused by a refused request.
#
# The daemon runs on a state directory of its own under target/, on
# 127.0.0.1 with a port the kernel picks, on the real engine
# (BERTH_FUZZ_ENGINE, default podman) with one small app installed from
# the demo image when it is there. Rerun: `make api-fuzz`.
#
# Knobs: API_FUZZ_EXAMPLES (schemathesis cases per operation, default 40),
# RPC_FUZZ_EXAMPLES (default 300), API_FUZZ_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/api-fuzz
venv=$work/venv
engine=${BERTH_FUZZ_ENGINE:-podman}
examples=${API_FUZZ_EXAMPLES:-40}
rpc_examples=${RPC_FUZZ_EXAMPLES:-300}
seed=${API_FUZZ_SEED:-$RANDOM}
mkdir -p "$work"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q 'version 4\.'; then
    echo "--- installing schemathesis 4 and hypothesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4,<5' 'hypothesis>=6'
fi

echo "--- building berth"
cargo build --quiet -p berth --bin berth
berth=$root/target/debug/berth

state=$(mktemp -d "$work/state.XXXXXX")
log=$work/daemon.log
stack=$state/stack.toml
stack_name=fuzz$$
cat >"$stack" <<TOML
[stack]
name = "$stack_name"
start_timeout = "30s"

[apps.web]
image = "localhost/berth-demo:latest"
entrypoint = ["/bin/berth-fake"]
command = ["http", "--listen", "0.0.0.0:8080", "--control", "0.0.0.0:9100", "--name", "web"]
TOML

daemon_pid=
cleanup() {
    if [[ -n $daemon_pid ]]; then
        if [[ -n ${token:-} && -n ${addr:-} ]]; then
            curl -s -m 20 -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
                -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stack.down\",\"params\":{\"stack\":\"$stack_name\",\"purge\":true}}" \
                "http://$addr/rpc/v1" >/dev/null || true
        fi
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$state"
}
trap cleanup EXIT

echo "--- starting the daemon ($engine, state $state)"
BERTH_STATE_DIR=$state "$berth" --engine "$engine" daemon --listen 127.0.0.1:0 --tick 2s >"$log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 300); do
    [[ -s $state/api-address && -s $state/api-token ]] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$log"; echo "api-fuzz: the daemon exited"; exit 1; }
    sleep 0.1
done
addr=$(tr -d '\n' <"$state/api-address")
token=$(tr -d '\n' <"$state/api-token")
echo "    API at http://$addr"

rpc() {
    curl -s -m 120 -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" "http://$addr/rpc/v1"
}
if "$engine" image exists localhost/berth-demo:latest 2>/dev/null \
    || "$engine" image inspect localhost/berth-demo:latest >/dev/null 2>&1; then
    echo "--- installing one app (web) so the state is not empty"
    rpc package.install "{\"stack_file\":\"$stack\",\"apps\":[\"web\"]}" | head -c 300; echo
else
    echo "--- no localhost/berth-demo:latest for $engine (bash scripts/build-images.sh $engine): fuzzing an empty state"
fi

failed=0
echo "--- schemathesis: $examples cases per operation (seed $seed), the live stream excluded (endless)"
if ! "$venv/bin/schemathesis" run "http://$addr/api/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "$examples" \
    --seed "$seed" \
    --request-timeout 15 \
    --max-response-time 15 \
    --exclude-path /api/events/stream \
    --workers 1 \
    --report junit --report-dir "$work/report" \
    --output-truncate true \
    2>&1 | tee "$work/schemathesis.log"; then
    failed=1
fi

echo "--- JSON-RPC and live-stream fuzz: $rpc_examples cases (seed $seed)"
if ! "$venv/bin/python" "$root/scripts/rpc-fuzz.py" --addr "$addr" --token "$token" \
    --examples "$rpc_examples" --seed "$seed" --stack-file "$stack" 2>&1 | tee "$work/rpc-fuzz.log"; then
    failed=1
fi

if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "api-fuzz: the daemon died during the run"; tail -50 "$log"; failed=1
fi
if grep -n 'panicked' "$log"; then
    echo "api-fuzz: the daemon panicked"; failed=1
fi
if [[ $failed -ne 0 ]]; then
    echo "api-fuzz: FAILED (logs in $work)"
    exit 1
fi
echo "api-fuzz: passed (logs in $work)"
