#!/usr/bin/env python3
"""Bounded property-based fuzz of berth's JSON-RPC endpoint (POST /rpc/v1)
and its live stream, run by scripts/api-fuzz.sh.

Properties, for every generated request:
- the answer comes within the timeout (no hung connection) and is never 5xx;
- it is a JSON-RPC 2.0 response (or 204 for a notification, 413 for a body
  over the cap), with an error object whose code is a documented one;
- a request that was refused (an error answer) changed nothing: the
  installed apps, their desired state and the event history are the same
  before and after it.
"""

import argparse
import http.client
import json
import sys
import time

from hypothesis import HealthCheck, given, seed as hyp_seed, settings, strategies as st

METHODS = [
    "package.install", "package.start", "package.stop", "package.restart",
    "package.reinstall", "package.uninstall", "stack.up", "stack.down",
    "container.list", "container.health", "container.logs", "events.list",
    "daemon.status", "gate.status", "gate.reset", "run.list", "run.show",
    "run.override", "run.retry", "run.abandon",
]
KEYS = ["apps", "app", "stack_file", "stack", "purge", "keep_data", "cascade",
        "tail", "after_id", "limit", "run", "force", "x"]
CODES = {-32700, -32600, -32601, -32602, -32000, -32001, -32002, -32003,
         -32004, -32005, -32006, -32010, -32011}
TIMEOUT_S = 60
BODY_BYTES_MAX = 64 * 1024

stats = {"cases": 0, "refused": 0, "answered": 0, "notifications": 0, "too_large": 0}


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--examples", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stack-file", required=True)
    return p.parse_args()


A = args()
HOST, PORT = A.addr.rsplit(":", 1)


def post(body: bytes, path="/rpc/v1", headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT), timeout=TIMEOUT_S)
    h = {"Authorization": f"Bearer {A.token}", "Content-Type": "application/json"}
    h.update(headers or {})
    started = time.monotonic()
    try:
        c.request("POST", path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
    except (TimeoutError, OSError) as e:
        raise AssertionError(f"no answer within {TIMEOUT_S} s ({e}) to {body[:300]!r}")
    finally:
        c.close()
    return r.status, data, time.monotonic() - started


def call(method, params):
    status, data, _ = post(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode())
    assert status == 200, (method, status, data[:300])
    return json.loads(data)


def snapshot():
    """What a refused request must not change."""
    apps = call("container.list", {})
    events = call("events.list", {"limit": 1000})
    assert "result" in apps and "result" in events, (apps, events)
    rows = apps["result"]
    rows = rows.get("apps", rows) if isinstance(rows, dict) else rows
    installed = sorted(json.dumps({k: a.get(k) for k in ("id", "app", "desired", "stack")}, sort_keys=True)
                       for a in rows) if isinstance(rows, list) else json.dumps(rows, sort_keys=True)
    # Only the apps' own history: supervision may record events of its own
    # (a health change) at any time, and those are not the request's doing.
    return installed, events["result"]["last_id"]


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["web", "nope", "", "a\x00b", "../x", "\x1b[2J", "/etc/passwd", A.stack_file,
                     "w" * 200, "web\n"]),
)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                      max_leaves=8)
params = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
    values,
    st.none(),
)
envelope = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2])},
    optional={
        "id": st.one_of(st.integers(-10, 10), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2)),
        "method": st.one_of(st.sampled_from(METHODS), st.text(max_size=20)),
        "params": params,
        "extra": st.integers(),
    },
)
good_value = st.sampled_from(["web", "nope", A.stack_file, 0, 1, 5, 1000, True, False, ["web"], ["nope"]])
well_formed = st.builds(
    lambda m, p, i: {"jsonrpc": "2.0", "id": i, "method": m, "params": p},
    st.sampled_from(METHODS),
    st.dictionaries(st.sampled_from(KEYS), good_value, max_size=3),
    st.integers(0, 1000),
)
# One bad app among good ones: the whole request must be refused, and the
# good app left as it was.
bad_app = st.sampled_from(["a\x00b", "", "w" * 200, "web\n", "\x1b[2J"])
partly_bad = st.builds(
    lambda m, bad: {"jsonrpc": "2.0", "id": 1, "method": m, "params": {"apps": ["web", bad]}},
    st.sampled_from(["package.stop", "package.restart", "package.uninstall", "package.start"]),
    bad_app,
)
raw = st.one_of(
    well_formed.map(lambda e: json.dumps(e).encode()),
    partly_bad.map(lambda e: json.dumps(e).encode()),
    envelope.map(lambda e: json.dumps(e).encode()),
    envelope.map(lambda e: json.dumps([e]).encode()),
    st.binary(max_size=200),
    st.just(b"{" * 10_000),
    st.just(b"[" * 100_000),
    st.just(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "daemon.status", "params": {"x": "y" * BODY_BYTES_MAX}}).encode()),
)


@settings(max_examples=A.examples, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@hyp_seed(A.seed)
@given(raw)
def rpc_requests(body):
    stats["cases"] += 1
    before = snapshot()
    status, data, took = post(body)
    assert status < 500, f"{status} for {body[:300]!r}: {data[:300]!r}"
    if status == 413:
        assert len(body) > BODY_BYTES_MAX, f"413 for a {len(body)}-byte body"
        stats["too_large"] += 1
        refused = True
    elif status == 204:
        stats["notifications"] += 1
        # A notification's outcome is not reported; nothing to compare.
        return
    else:
        assert status == 200, f"{status} for {body[:300]!r}: {data[:300]!r}"
        answer = json.loads(data)
        assert answer.get("jsonrpc") == "2.0", answer
        assert ("result" in answer) != ("error" in answer), answer
        refused = "error" in answer
        if refused:
            code = answer["error"]["code"]
            assert code in CODES, f"undocumented error code {code}: {answer}"
            assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    if refused:
        stats["refused"] += 1
        after = snapshot()
        assert after == before, f"a refused request changed the state: {body[:300]!r}\n{before}\n{after}"
    else:
        stats["answered"] += 1


def stream_probe():
    """The live stream: bad queries get 400, good ones start with `state`."""
    for query, want in [("?after_id=x", 400), ("?bogus=1", 400), ("?after_id=9223372036854775808", 400),
                        ("", 200), ("?after_id=-1", 200), ("?after_id=0", 200)]:
        c = http.client.HTTPConnection(HOST, int(PORT), timeout=10)
        c.request("GET", "/api/events/stream" + query, headers={"Authorization": f"Bearer {A.token}"})
        r = c.getresponse()
        assert r.status == want, f"/api/events/stream{query}: {r.status}, wanted {want}"
        if want == 200:
            line = r.readline().decode()
            assert line.startswith("event: state"), line
        c.close()
        stats["cases"] += 1


failed = False
try:
    rpc_requests()
    stream_probe()
except AssertionError as e:  # hypothesis re-raises the shrunk failure
    print(f"rpc-fuzz: FAILED: {e}", file=sys.stderr)
    failed = True
print("rpc-fuzz: {cases} cases: {answered} answered, {refused} refused (state unchanged), "
      "{notifications} notifications, {too_large} over the body cap".format(**stats))
sys.exit(1 if failed else 0)
