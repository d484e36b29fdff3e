#!/usr/bin/env bash
# berth machine setup: Debian packages, dockerd, a local registry, and the
# Podman registry entry for it. Idempotent; well under 2 s when everything
# is already in place. Safe under CI=true (no tty, no prompts).
#
# Usage: scripts/setup.sh [--no-docker] [--no-registry]
#   BERTH_SETUP_SKIP_APT=1   do not install packages (only check)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

START_NS=$(date +%s%N)
log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

WANT_DOCKER=1
WANT_REGISTRY=1
for arg in "$@"; do
    case "$arg" in
        --no-docker) WANT_DOCKER=0 ;;
        --no-registry) WANT_REGISTRY=0 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) die "unknown argument: $arg" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (packages, dockerd, /etc/containers)"

# ---------------------------------------------------------------- packages
PACKAGES=(
    podman runc busybox-static docker.io docker-registry chromium chromium-driver
    podman-compose docker-compose wrk hyperfine sqlite3 jq curl procps iproute2
    ca-certificates monero systemd
)
# One dpkg-query for all; unknown packages print nothing on stdout.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${PACKAGES[@]}"; do
    grep -qE "^${p} ii" <<<"$installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "${BERTH_SETUP_SKIP_APT:-0}" = 1 ] && die "missing packages: ${missing[*]}"
    log "installing: ${missing[*]}"
    apt-get update -qq
    # Recommends are kept on purpose: podman's (catatonit, slirp4netns,
    # uidmap, fuse-overlayfs) and docker.io's (iptables, cgroupfs-mount) are
    # what the measured setup had.
    apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/var/log/berth-apt.log 2>&1 \
        || { tail -n 40 /var/log/berth-apt.log >&2; die "apt-get install failed (log: /var/log/berth-apt.log)"; }
    log "installed ${#missing[@]} package(s)"
else
    log "packages: all ${#PACKAGES[@]} present"
fi

# Debian's docker.io may try to start dockerd from its postinst through
# invoke-rc.d; without systemd that is a no-op or a harmless failure. We start
# it ourselves below.

# ---------------------------------------------------------------- helpers
# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.2
    done
}

docker_answers() {
    [ -S /var/run/docker.sock ] &&
        [ "$(curl -s --max-time 2 --unix-socket /var/run/docker.sock http://localhost/_ping 2>/dev/null)" = OK ]
}

# ---------------------------------------------------------------- dockerd
if [ "$WANT_DOCKER" = 1 ]; then
    if docker_answers; then
        log "dockerd: already answering on /var/run/docker.sock"
    else
        command -v dockerd >/dev/null || die "dockerd not found (package docker.io)"
        # A dockerd that died leaves its pid file; a live one we would have
        # seen answering (or it is still starting: then wait for it).
        if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
            log "dockerd: pid $(cat /var/run/docker.pid) exists but does not answer yet; waiting"
        else
            rm -f /var/run/docker.pid
            log "dockerd: starting (log /var/log/berth-dockerd.log)"
            # setsid: not a child of this script's session, survives it.
            setsid dockerd >>/var/log/berth-dockerd.log 2>&1 </dev/null &
        fi
        if ! wait_for 60 "docker" docker_answers; then
            tail -n 30 /var/log/berth-dockerd.log >&2 || true
            die "dockerd did not answer within 60 s (log /var/log/berth-dockerd.log)"
        fi
        wait_for 30 "docker info" docker info || die "'docker info' fails although dockerd answers"
        log "dockerd: up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    fi
fi

# ---------------------------------------------------------------- registry
REGISTRY_DIR=/var/lib/berth-registry
REGISTRY_CONF=/etc/berth/registry.yml
registry_code() {
    curl -s -o /dev/null --max-time 2 -w '%{http_code}' http://127.0.0.1:5000/v2/ 2>/dev/null || true
}
registry_answers() { [ "$(registry_code)" = 200 ]; }
write_if_changed() { # PATH CONTENT
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
        mkdir -p "$(dirname "$1")"
        printf '%s\n' "$2" >"$1"
        log "wrote $1"
    fi
}
if [ "$WANT_REGISTRY" = 1 ]; then
    write_if_changed "$REGISTRY_CONF" "# berth test registry: loopback only, no auth, no TLS.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
health:
  storagedriver:
    enabled: false"
    if registry_answers; then
        log "registry: already answering on http://127.0.0.1:5000/v2/"
    else
        code=$(registry_code)
        case "$code" in
            ''|000) ;;
            *) die "something else answers on 127.0.0.1:5000 (HTTP $code for /v2/; Debian's docker-registry service with its htpasswd config?). Stop it and rerun." ;;
        esac
        mkdir -p "$REGISTRY_DIR"
        log "registry: starting docker-registry on 127.0.0.1:5000 (log /var/log/berth-registry.log)"
        setsid /usr/bin/docker-registry serve "$REGISTRY_CONF" >>/var/log/berth-registry.log 2>&1 </dev/null &
        if ! wait_for 30 "registry" registry_answers; then
            tail -n 20 /var/log/berth-registry.log >&2 || true
            die "registry did not answer on 127.0.0.1:5000 within 30 s"
        fi
        log "registry: up"
    fi
fi

# Podman: plain-HTTP pushes/pulls to the test registry. This is the only
# containers config berth's setup touches; runtime/cgroups/ulimits are for
# berth itself to detect.
write_if_changed /etc/containers/registries.conf.d/berth-local.conf '# berth: the local test registry (scripts/setup.sh) speaks plain HTTP.
[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
location = "localhost:5000"
insecure = true'

END_NS=$(date +%s%N)
log "done in $(( (END_NS - START_NS) / 1000000 )) ms"
