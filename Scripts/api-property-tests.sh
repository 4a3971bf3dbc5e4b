#!/usr/bin/env bash
# Property-based API tests from the spec: schemathesis (PyPI, pinned, in a virtualenv outside the
# repository) generates requests from docs/openapi.yaml against a live `hotswap serve` on the tiny
# fixture model, and checks: no 5xx, status codes, content types and bodies as the spec says.
# Bounded (examples per operation, one worker); the seed is printed (HOTSWAP_API_SEED replays it).
# Needs the release build (Scripts/test.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HOTSWAP_API_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hotswap-api-tests-venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi
seed="${HOTSWAP_API_SEED:-$RANDOM}"
run="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
.build/release/hotswap serve --model Tests/Fixtures/models/sd1-tiny --adapters-dir "$run/adapters" --db "$run/t.sqlite" \
    --port "$port" --max-steps 4 --max-pixels 16384 --log-level warning >"$run/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$run"' EXIT
# GET a path; fails unless it answers 2xx (python3's standard library: no curl needed).
get() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)' "http://127.0.0.1:$port$1"; }
for _ in $(seq 1 120); do
    get "/readyz" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$run/serve.log"; exit 1; }
    sleep 0.5
done
echo "schemathesis: seed $seed, port $port"
"$venv/bin/schemathesis" run docs/openapi.yaml --url "http://127.0.0.1:$port" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${HOTSWAP_API_EXAMPLES:-25}" --seed "$seed" --workers 1 --phases examples,coverage,fuzzing \
    --request-timeout 60
# The server served to the end.
get "/v1/adapters"
