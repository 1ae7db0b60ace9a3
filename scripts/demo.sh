#!/usr/bin/env bash
# Install builder, generate a service from the default vars.yaml, start it and ask it for predictions.
# Usage: scripts/demo.sh [output folder, default ./build]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$repo/build}")"
venv="$repo/.venv-demo"
port="${PORT:-8000}"

python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" "$repo"

mkdir -p "$out"
"$venv/bin/builder" --output-dir "$out" --force
service="$out/iris-classifier"

# The service gets its own virtualenv from its own pinned requirements, as a user would set it up.
"$venv/bin/uv" venv --quiet --python "$venv/bin/python" "$service/.venv"
"$venv/bin/uv" pip install --quiet --python "$service/.venv/bin/python" -r "$service/requirements.txt"

PATH="$service/.venv/bin:$PATH" HOST=127.0.0.1 PORT="$port" "$service/run.sh" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 60); do
    curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.5
done

body='{"data": [[5.1, 3.5, 1.4, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]]}'
echo
echo "POST /predict        $body"
curl -fsS "http://127.0.0.1:$port/predict" -H 'content-type: application/json' -d "$body"
echo
echo "POST /predict/label  $body"
curl -fsS "http://127.0.0.1:$port/predict/label" -H 'content-type: application/json' -d "$body"
echo
echo "POST /predict with a bad row (3 values): HTTP $(curl -s -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$port/predict" -H 'content-type: application/json' -d '{"data": [[1, 2, 3]]}')"
echo
echo "The service is in $service (stopping the demo server now)."
