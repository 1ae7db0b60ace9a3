#!/usr/bin/env bash
# Make a Docker-compatible engine answer, and print the DOCKER_HOST to reach it.
#
# A Docker daemon that already answers (DOCKER_HOST or the default socket) is used as it is.
# Otherwise podman's Docker-compatible API service is installed (Debian packages, as root) and
# started. Base images that cannot be pulled (a machine with no registry) are replaced by
# stand-ins built from Debian packages with the same shape; a real pull is always tried first.
#
# Usage: eval "$(scripts/container-engine.sh)"      # exports DOCKER_HOST
set -euo pipefail

state="${BUILDER_ENGINE_DIR:-/tmp/builder-engine}"
socket="$state/podman.sock"
log() { echo "container-engine: $*" >&2; }

docker_answers() {
    python3 - "$1" <<'PY' >/dev/null 2>&1
import http.client, socket, sys
path = sys.argv[1].removeprefix("unix://")
conn = http.client.HTTPConnection("localhost", timeout=3)
conn.sock = socket.socket(socket.AF_UNIX); conn.sock.settimeout(3); conn.sock.connect(path)
conn.request("GET", "/_ping"); sys.exit(0 if conn.getresponse().status == 200 else 1)
PY
}

for candidate in "${DOCKER_HOST:-}" unix:///var/run/docker.sock; do
    if [[ "$candidate" == unix://* ]] && docker_answers "$candidate"; then
        log "using the engine at $candidate"
        echo "export DOCKER_HOST=$candidate"
        exit 0
    fi
done

install_podman() {
    command -v podman >/dev/null && command -v mmdebstrap >/dev/null && command -v runc >/dev/null \
        && return
    log "installing podman, buildah, runc and mmdebstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends podman buildah runc mmdebstrap uidmap \
        fuse-overlayfs ca-certificates >/dev/null
}

start_service() {
    mkdir -p "$state"
    # crun fails here ("cgroups in hybrid mode"), and container start fails while podman asks for
    # raised rlimits the process may not have: runc, and no default ulimits.
    printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' >"$state/containers.conf"
    export CONTAINERS_CONF="$state/containers.conf" BUILDAH_ISOLATION=chroot
    if ! docker_answers "unix://$socket"; then
        rm -f "$socket"
        # From /: the service outlives this checkout, and conmon fails in a deleted working folder.
        (cd / && exec setsid podman system service --time=0 "unix://$socket") \
            >"$state/service.log" 2>&1 &
        echo $! >"$state/service.pid"
        for _ in $(seq 100); do docker_answers "unix://$socket" && break; sleep 0.1; done
        docker_answers "unix://$socket" || { log "podman service did not start"; exit 1; }
    fi
}

debian_mirror() {
    awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
        || awk '/^deb / {print $2; exit}' /etc/apt/sources.list
}

# stand_in IMAGE PACKAGES ENV... : a Debian bookworm image with PACKAGES, tagged IMAGE.
stand_in() {
    local image="$1" packages="$2"; shift 2
    podman image exists "$image" && return
    if timeout 60 podman pull -q "$image" >/dev/null 2>&1; then
        log "pulled $image"
        return
    fi
    log "no registry for $image: building a stand-in from Debian packages"
    local work
    work="$(mktemp -d)"
    mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$work/rootfs.tar" \
        "$(debian_mirror)"
    local changes=(--change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin')
    for extra in "$@"; do changes+=(--change "$extra"); done
    podman import --quiet "${changes[@]}" "$work/rootfs.tar" "$image" >/dev/null
    rm -rf "$work"
}

python_stand_in() {
    podman image exists docker.io/library/python:3.11-slim && return
    stand_in localhost/builder/debian-python:raw ca-certificates,python3,python3-venv,passwd
    local ctx
    ctx="$(mktemp -d)"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca.crt"
    # The real image has python and pip in /usr/local/bin; a venv there gives the same shape.
    printf 'FROM localhost/builder/debian-python:raw\nCOPY ca.crt /etc/ssl/certs/ca-certificates.crt\nRUN python3 -m venv /usr/local\nENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8\nCMD ["python3"]\n' \
        >"$ctx/Containerfile"
    podman build --quiet --format docker --isolation chroot --network host \
        -t docker.io/library/python:3.11-slim "$ctx" >/dev/null
    rm -rf "$ctx"
}

# PostgreSQL with the official image's shape: its postgres user is uid 999 and owns PGDATA; a first
# start with an empty PGDATA creates the cluster with POSTGRES_PASSWORD, reachable over TCP.
postgres_stand_in() {
    local image=docker.io/library/postgres:16-bookworm
    podman image exists "$image" && return
    if timeout 60 podman pull -q "$image" >/dev/null 2>&1; then
        log "pulled $image"
        return
    fi
    stand_in localhost/builder/debian-postgres:raw postgresql,passwd
    local ctx
    ctx="$(mktemp -d)"
    cat >"$ctx/docker-entrypoint.sh" <<'SH'
#!/bin/sh
set -e
bin="$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >/tmp/pwfile
    "$bin/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile=/tmp/pwfile -A scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
[ "${1:-}" = postgres ] && shift
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
SH
    printf '%s\n' \
        'FROM localhost/builder/debian-postgres:raw' \
        'RUN usermod -u 999 postgres && groupmod -g 999 postgres && mkdir -p /var/lib/postgresql/data /var/run/postgresql && chown -R 999:999 /var/lib/postgresql /var/run/postgresql && chmod 700 /var/lib/postgresql/data' \
        'COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh' \
        'RUN chmod 755 /usr/local/bin/docker-entrypoint.sh' \
        'ENV PGDATA=/var/lib/postgresql/data' \
        'ENTRYPOINT ["docker-entrypoint.sh"]' \
        'CMD ["postgres"]' >"$ctx/Containerfile"
    podman build --quiet --format docker --isolation chroot --network host -t "$image" "$ctx" >/dev/null
    rm -rf "$ctx"
}

install_podman
start_service
python_stand_in
stand_in docker.io/library/redis:7.2-bookworm redis-server,passwd 'CMD ["redis-server"]'
postgres_stand_in
log "podman's Docker API at unix://$socket"
echo "export DOCKER_HOST=unix://$socket CONTAINERS_CONF=$state/containers.conf BUILDAH_ISOLATION=chroot"
