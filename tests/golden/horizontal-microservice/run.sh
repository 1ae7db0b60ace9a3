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
# Read by the workers: the port of the Open Inference Protocol over gRPC (0: off).
export GRPC_PORT="${GRPC_PORT:-0}"
# Read by src/gunicorn_conf.py too: the level and format (json or text) of every log line.
export LOG_LEVEL="${LOG_LEVEL:-info}"
export LOG_FORMAT="${LOG_FORMAT:-text}"
# The workers' metrics files, which /metrics adds up: a fresh folder for every start, so that no
# count of an earlier run leaks in (a folder given here is emptied of them instead).
if [[ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]]; then
    PROMETHEUS_MULTIPROC_DIR="$(mktemp -d "${TMPDIR:-/tmp}/metrics.XXXXXX")"
else
    mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
    rm -f "${PROMETHEUS_MULTIPROC_DIR}"/*.db
fi
export PROMETHEUS_MULTIPROC_DIR
# The model swap's files (src/release/state.py): one folder per service and port, so that
# `make reload` finds this service's master; only its owner may write there.
SERVICE_STATE_DIR="${SERVICE_STATE_DIR:-${TMPDIR:-/tmp}/horizontal-microservice-${PORT}.state}"
mkdir -p -m 700 "${SERVICE_STATE_DIR}"
if [[ ! -O "${SERVICE_STATE_DIR}" ]]; then
    echo "run.sh: ${SERVICE_STATE_DIR} belongs to another user; set SERVICE_STATE_DIR" >&2
    exit 1
fi
rm -rf "${SERVICE_STATE_DIR}/ready" "${SERVICE_STATE_DIR}"/*.json
export SERVICE_STATE_DIR

# No control socket: it would be written under $HOME, which is read-only in the container.
# exec: gunicorn becomes PID 1 in a container and receives SIGTERM for a graceful shutdown.
# src.release.serve is gunicorn whose SIGHUP swaps the model without downtime (make reload).
exec "${PYTHON:-python3}" -m src.release.serve 'src.app.main:create_app()' \
    --config python:src.gunicorn_conf \
    --worker-class src.http_guard.Worker \
    --bind "${HOST}:${PORT}" \
    --workers "${WORKERS}" \
    --timeout "${TIMEOUT}" \
    --graceful-timeout "${GRACEFUL_TIMEOUT}" \
    --keep-alive "${KEEPALIVE}" \
    --log-level "${LOG_LEVEL}" \
    --error-logfile - \
    --worker-tmp-dir "${TMPDIR:-/tmp}" \
    --pid "${SERVICE_STATE_DIR}/gunicorn.pid" \
    --no-control-socket
