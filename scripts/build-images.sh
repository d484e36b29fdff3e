#!/usr/bin/env bash
# Build localhost/berth-demo:latest, a FROM-scratch image holding the static
# busybox (Debian busybox-static) and a static berth-fake, for Podman and/or
# Docker. No registry is needed.
#
# Usage: scripts/build-images.sh [podman|docker|all]     (default: all)
#
# Fast no-op: the assembled context is hashed; if localhost/berth-demo:<hash>
# already exists in an engine, that engine is skipped (only :latest is
# re-pointed if needed). Otherwise the image is built and tagged :<hash> and
# :latest. With 'all', an engine that is not available is skipped with a
# warning; asking for it explicitly makes that an error.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=localhost/berth-demo
CTX=$ROOT/target/images/demo
TARGET=x86_64-unknown-linux-gnu
STATIC_DIR=$ROOT/target/static
BUSYBOX=/bin/busybox
APPLETS=(sh sleep nc httpd cat echo ls mkdir test wget kill true false env rm printf)

log() { printf 'build-images: %s\n' "$*"; }
die() { printf 'build-images: ERROR: %s\n' "$*" >&2; exit 1; }

want=${1:-all}
case "$want" in
    podman|docker|all) ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "usage: $0 [podman|docker|all]" ;;
esac

# ---------------------------------------------------------------- binary
# Own target dir + RUSTFLAGS so the workspace's normal build cache is left
# alone; no debug info and stripped so the image stays small.
log "building static berth-fake (target/static)"
RUSTFLAGS='-C target-feature=+crt-static' \
CARGO_TARGET_DIR=$STATIC_DIR \
CARGO_PROFILE_RELEASE_DEBUG=false \
CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --quiet --release -p berth-fake --target "$TARGET"
FAKE=$STATIC_DIR/$TARGET/release/berth-fake
[ -x "$FAKE" ] || die "no binary at $FAKE"
# A static binary has no program interpreter (readelf comes with gcc's binutils).
is_dynamic() { command -v readelf >/dev/null && LC_ALL=C readelf -lW "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }
if is_dynamic "$FAKE"; then
    die "$FAKE is not statically linked"
fi

# ---------------------------------------------------------------- context
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing: install busybox-static (scripts/setup.sh)"
if is_dynamic "$BUSYBOX"; then
    die "$BUSYBOX is dynamically linked: install busybox-static (scripts/setup.sh)"
fi
ROOTFS=$CTX/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/data"
chmod 1777 "$ROOTFS/tmp"
chmod 0755 "$ROOTFS/data"
copy_if_changed() { # SRC DST MODE
    if ! cmp -s "$1" "$2"; then
        install -m "$3" "$1" "$2"
    fi
}
copy_if_changed "$BUSYBOX" "$ROOTFS/bin/busybox" 0755
copy_if_changed "$FAKE" "$ROOTFS/bin/berth-fake" 0755
for a in "${APPLETS[@]}"; do
    [ "$(readlink "$ROOTFS/bin/$a" 2>/dev/null)" = busybox ] || ln -sfn busybox "$ROOTFS/bin/$a"
done
write_if_changed() { # PATH CONTENT
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then printf '%s\n' "$2" >"$1"; fi
}
write_if_changed "$ROOTFS/etc/passwd" 'root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false'
write_if_changed "$ROOTFS/etc/group" 'root:x:0:
nogroup:x:65534:'
copy_if_changed "$ROOT/images/demo/Containerfile" "$CTX/Containerfile" 0644

# Content hash over paths, modes, link targets and bytes (mtimes zeroed).
HASH=$(tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        --format=gnu -cf - -C "$CTX" . | sha256sum | cut -c1-16)
log "context $CTX: hash $HASH ($(du -sh "$CTX" | cut -f1))"

# ---------------------------------------------------------------- engines
docker_answers() {
    [ -S /var/run/docker.sock ] &&
        [ "$(curl -s --max-time 2 --unix-socket /var/run/docker.sock http://localhost/_ping 2>/dev/null)" = OK ]
}

# build_for ENGINE: ENGINE is podman or docker.
build_for() {
    local engine=$1 id_hash id_latest
    if "$engine" image inspect "$IMAGE:$HASH" >/dev/null 2>&1; then
        id_hash=$("$engine" image inspect --format '{{.Id}}' "$IMAGE:$HASH")
        id_latest=$("$engine" image inspect --format '{{.Id}}' "$IMAGE:latest" 2>/dev/null || true)
        if [ "$id_hash" != "$id_latest" ]; then
            "$engine" tag "$IMAGE:$HASH" "$IMAGE:latest"
            log "$engine: $IMAGE:$HASH exists; re-tagged :latest"
        else
            log "$engine: $IMAGE:$HASH is up to date (no-op)"
        fi
        return 0
    fi
    log "$engine: building $IMAGE:$HASH and :latest"
    local t0 t1
    t0=$(date +%s%N)
    local out cmd
    case "$engine" in
        # --timestamp 0: same context, same image ID.
        podman) cmd=(podman build --pull=never --layers=false --timestamp 0) ;;
        # Legacy builder: there is no buildx plugin here, and dockerd is 20.10.
        docker) cmd=(env DOCKER_BUILDKIT=0 docker build) ;;
    esac
    if ! out=$("${cmd[@]}" --label "org.berth.content-hash=$HASH" \
            -t "$IMAGE:$HASH" -t "$IMAGE:latest" -f "$CTX/Containerfile" "$CTX" 2>&1); then
        printf '%s\n' "$out" >&2
        die "$engine build failed"
    fi
    t1=$(date +%s%N)
    log "$engine: built $IMAGE:$HASH in $(( (t1 - t0) / 1000000 )) ms"
    prune_old "$engine"
}

# Drop older content-hash tags (an image a container still uses stays).
prune_old() {
    local engine=$1 ref
    local old=()
    while read -r ref; do
        [[ "$ref" =~ :[0-9a-f]{16}$ ]] && [ "$ref" != "$IMAGE:$HASH" ] && old+=("$ref")
    done < <("$engine" images --format '{{.Repository}}:{{.Tag}}' "$IMAGE" 2>/dev/null || true)
    local removed=0 kept=0
    for ref in "${old[@]}"; do
        if "$engine" rmi "$ref" >/dev/null 2>&1; then
            removed=$((removed + 1))
        else
            kept=$((kept + 1))
        fi
    done
    if [ $((removed + kept)) -gt 0 ]; then
        log "$engine: removed $removed older tag(s) of $IMAGE; $kept kept (in use by containers)"
    fi
}

rc=0
if [ "$want" = podman ] || [ "$want" = all ]; then
    if command -v podman >/dev/null; then
        build_for podman
    elif [ "$want" = podman ]; then
        die "podman not installed (scripts/setup.sh)"
    else
        log "WARNING: podman not installed; skipped"
    fi
fi
if [ "$want" = docker ] || [ "$want" = all ]; then
    if ! command -v docker >/dev/null; then
        [ "$want" = docker ] && die "docker not installed (scripts/setup.sh)"
        log "WARNING: docker not installed; skipped"
    elif ! docker_answers; then
        if [ "$want" = docker ]; then
            die "dockerd is not running (/var/run/docker.sock does not answer); run scripts/setup.sh"
        fi
        log "WARNING: dockerd is not running; docker image skipped (run scripts/setup.sh)"
    else
        build_for docker
    fi
fi
# The real-monerod image (Debian's monerod, for the chain-daemon tests) is
# its own script: it shares nothing with the demo image but the engines.
"$ROOT/scripts/build-monerod-image.sh" "$want" || rc=$?
exit "$rc"
