#!/usr/bin/env bash
# Start every backend model service on this machine, each with its own model and port, as the
# proxy's defaults expect (backend number i on 8001 + i); stop them all with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"

trap 'kill 0' EXIT
PORT=8001 WORKERS="${BACKEND_WORKERS:-1}" \
    MODEL_FILEPATH=models/backends/setosa.onnx PROMETHEUS_MULTIPROC_DIR= ./run.sh &
PORT=8002 WORKERS="${BACKEND_WORKERS:-1}" \
    MODEL_FILEPATH=models/backends/versicolor.onnx PROMETHEUS_MULTIPROC_DIR= ./run.sh &
PORT=8003 WORKERS="${BACKEND_WORKERS:-1}" \
    MODEL_FILEPATH=models/backends/virginica.onnx PROMETHEUS_MULTIPROC_DIR= ./run.sh &
wait
