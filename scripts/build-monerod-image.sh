#!/usr/bin/env bash
# Build localhost/berth-monerod:latest, a FROM-scratch image holding Debian's
# real monerod (package monero, 0.18) with the shared libraries it links and
# the dynamic loader, the static busybox, and images/monerod/regtest-pair.sh
# as /bin/monerod-regtest-pair. Nothing but Debian packages goes in.
#
# Usage: scripts/build-monerod-image.sh [podman|docker|all]   (default: all)
#
# Same rules as scripts/build-images.sh (which calls this at its end): the
# assembled context is hashed; an engine that already has
# localhost/berth-monerod:<hash> is a no-op (only :latest re-pointed).
# With 'all', a missing engine is skipped with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=localhost/berth-monerod
CTX=$ROOT/target/images/monerod
MONEROD=/usr/bin/monerod
BUSYBOX=/bin/busybox
APPLETS=(sh sleep nc cat echo ls mkdir test kill true false env rm printf ps)

log() { printf 'build-monerod-image: %s\n' "$*"; }
die() { printf 'build-monerod-image: ERROR: %s\n' "$*" >&2; exit 1; }

want=${1:-all}
case "$want" in
    podman|docker|all) ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "usage: $0 [podman|docker|all]" ;;
esac

[ -x "$MONEROD" ] || die "$MONEROD missing: install the monero package (scripts/setup.sh)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing: install busybox-static (scripts/setup.sh)"

# ---------------------------------------------------------------- context
ROOTFS=$CTX/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/usr/bin" "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/data"
chmod 1777 "$ROOTFS/tmp"
chmod 0755 "$ROOTFS/data"
copy_if_changed() { # SRC DST MODE (SRC symlinks are followed)
    mkdir -p "$(dirname "$2")"
    if ! cmp -s "$1" "$2"; then
        install -m "$3" "$1" "$2"
    else
        chmod "$3" "$2"
    fi
}
copy_if_changed "$MONEROD" "$ROOTFS/usr/bin/monerod" 0755
# Every library the loader resolves, at the path it resolves it to, plus the
# loader at the path monerod names (PT_INTERP). Copies, not links: the
# rootfs has no /usr merge to point into.
# ldd names the loader by the path in PT_INTERP, as its one absolute first
# field (no "=>"); readelf would need binutils.
interp=$(ldd "$MONEROD" | awk '$1 ~ /^\// { print $1 }')
[ -n "$interp" ] || die "cannot read $MONEROD's program interpreter"
declare -A wanted=([usr/bin/monerod]=1)
while read -r lib; do
    [ "$lib" = "$interp" ] && continue
    copy_if_changed "$lib" "$ROOTFS$lib" 0644
    wanted[${lib#/}]=1
done < <(ldd "$MONEROD" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
# The kernel opens the loader for execution: it must be executable.
copy_if_changed "$interp" "$ROOTFS$interp" 0755
wanted[${interp#/}]=1
# A library monerod no longer links (a Debian update) must not linger in
# the image or in its hash.
while read -r f; do
    rel=${f#"$ROOTFS"/}
    [ -n "${wanted[$rel]:-}" ] || rm -f "$f"
done < <(find "$ROOTFS/lib" "$ROOTFS/lib64" "$ROOTFS/usr/lib" -type f 2>/dev/null || true)

copy_if_changed "$BUSYBOX" "$ROOTFS/bin/busybox" 0755
for a in "${APPLETS[@]}"; do
    [ "$(readlink "$ROOTFS/bin/$a" 2>/dev/null)" = busybox ] || ln -sfn busybox "$ROOTFS/bin/$a"
done
copy_if_changed "$ROOT/images/monerod/regtest-pair.sh" "$ROOTFS/bin/monerod-regtest-pair" 0755
write_if_changed() { # PATH CONTENT
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then printf '%s\n' "$2" >"$1"; fi
}
write_if_changed "$ROOTFS/etc/passwd" 'root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false'
write_if_changed "$ROOTFS/etc/group" 'root:x:0:
nogroup:x:65534:'
copy_if_changed "$ROOT/images/monerod/Containerfile" "$CTX/Containerfile" 0644

# Content hash over paths, modes, link targets and bytes (mtimes zeroed).
HASH=$(tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        --format=gnu -cf - -C "$CTX" . | sha256sum | cut -c1-16)
log "context $CTX: hash $HASH ($(du -sh "$CTX" | cut -f1))"

# ---------------------------------------------------------------- engines
docker_answers() {
    [ -S /var/run/docker.sock ] &&
        [ "$(curl -s --max-time 2 --unix-socket /var/run/docker.sock http://localhost/_ping 2>/dev/null)" = OK ]
}

build_for() { # ENGINE: podman or docker
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
    local t0 t1 out cmd
    t0=$(date +%s%N)
    case "$engine" in
        podman) cmd=(podman build --pull=never --layers=false --timestamp 0) ;;
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
    local engine=$1 ref removed=0 kept=0
    local old=()
    while read -r ref; do
        [[ "$ref" =~ :[0-9a-f]{16}$ ]] && [ "$ref" != "$IMAGE:$HASH" ] && old+=("$ref")
    done < <("$engine" images --format '{{.Repository}}:{{.Tag}}' "$IMAGE" 2>/dev/null || true)
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
        [ "$want" = docker ] && die "dockerd is not running (/var/run/docker.sock does not answer); run scripts/setup.sh"
        log "WARNING: dockerd is not running; docker image skipped (run scripts/setup.sh)"
    else
        build_for docker
    fi
fi
