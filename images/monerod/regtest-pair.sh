#!/bin/sh
# Two real monerods in regtest on one container's loopback, so a test can
# move the probed node from "not synced" to "synced" with no network and
# no timing luck:
#
#   seed: listens for peers on 127.0.0.1:18090, never dials out
#         (--out-peers 0); RPC on 0.0.0.0:18091.
#   node: the probed one. RPC on 0.0.0.0:18081; dials only the seed
#         (--add-exclusive-node), but is started with --out-peers 0, so it
#         has no peer and reports synchronized=false, target_height=0.
#
# The test (or an operator) releases it with the node's own RPC:
#   POST http://<ip>:18081/out_peers {"out_peers": 1}
# The node then connects to the seed and reports synchronized=true. Blocks
# mined on the seed (`generateblocks` on :18091, once the node is
# connected) reach the node by relay.
#
# SIGTERM stops both monerods and waits for them (about 2 s); if either
# exits on its own the container exits too, with a failure status.
set -u
data=${MONEROD_DATA:-/data}
mkdir -p "$data/seed" "$data/node"
# Flags both share: regtest with difficulty 1 (generateblocks is instant),
# nothing that would look for the outside world (no UPnP, DNS checkpoints,
# update checks, ZMQ), plain-HTTP RPC reachable from the stack network.
common="--regtest --fixed-difficulty 1 --non-interactive --no-igd --no-zmq
 --disable-dns-checkpoints --check-updates disabled --rpc-ssl disabled
 --confirm-external-bind --log-level ${MONEROD_LOG_LEVEL:-0}"
# shellcheck disable=SC2086
/usr/bin/monerod $common --data-dir "$data/seed" --log-file "$data/seed/monerod.log" \
    --p2p-bind-ip 127.0.0.1 --p2p-bind-port 18090 --out-peers 0 \
    --rpc-bind-ip 0.0.0.0 --rpc-bind-port 18091 &
seed=$!
# shellcheck disable=SC2086
/usr/bin/monerod $common --data-dir "$data/node" --log-file "$data/node/monerod.log" \
    --p2p-bind-ip 127.0.0.1 --p2p-bind-port 18080 --out-peers 0 \
    --add-exclusive-node 127.0.0.1:18090 \
    --rpc-bind-ip 0.0.0.0 --rpc-bind-port 18081 &
node=$!
stop() {
    kill -TERM "$seed" "$node" 2>/dev/null
    wait "$seed"; wait "$node"
    exit 0
}
trap stop TERM INT
while kill -0 "$seed" 2>/dev/null && kill -0 "$node" 2>/dev/null; do
    # A backgrounded sleep so the TERM trap runs at once, not after it.
    sleep 1 &
    wait $!
done
echo "monerod-regtest-pair: a monerod exited on its own" >&2
kill -TERM "$seed" "$node" 2>/dev/null
wait
exit 1
