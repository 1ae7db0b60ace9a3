#!/usr/bin/env bash
# Start the service: gunicorn managing uvicorn workers. Every setting comes from the environment.
set -euo pipefail
cd "$(dirname "$0")"

HOST="${HOST:-0.0.0.0}"
PORT="${PORT:-8000}"
WORKERS="${WORKERS:-2}"
TIMEOUT="${TIMEOUT:-30}"
GRACEFUL_TIMEOUT="${GRACEFUL_TIMEOUT:-20}"
KEEPALIVE="${KEEPALIVE:-5}"
LOG_LEVEL="${LOG_LEVEL:-info}"
# One line per request costs about a fifth of the throughput of a small model; off by default.
ACCESS_LOG="${ACCESS_LOG:-false}"
access_log=()
case "${ACCESS_LOG}" in
    1 | true | yes | on) access_log=(--access-logfile -) ;;
esac

# No control socket: it would be written under $HOME, which is read-only in the container.
# exec: gunicorn becomes PID 1 in a container and receives SIGTERM for a graceful shutdown.
exec "${PYTHON:-python3}" -m gunicorn 'src.app.main:create_app()' \
    --worker-class uvicorn_worker.UvicornWorker \
    --bind "${HOST}:${PORT}" \
    --workers "${WORKERS}" \
    --timeout "${TIMEOUT}" \
    --graceful-timeout "${GRACEFUL_TIMEOUT}" \
    --keep-alive "${KEEPALIVE}" \
    --log-level "${LOG_LEVEL}" \
    "${access_log[@]}" \
    --error-logfile - \
    --worker-tmp-dir "${TMPDIR:-/tmp}" \
    --no-control-socket
