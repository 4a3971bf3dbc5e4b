#!/usr/bin/env bash
# Live test of the A1111 and OpenAI routes with the real client libraries: the `openai` and
# `webuiapi` packages (PyPI, pinned, in a virtualenv outside the repository) against
# `hotswap serve` on the tiny fixture model with two adapters (Scripts/client_api_check.py says
# what is checked). Then the timing report must count their requests under their APIs.
# Needs the release build (Scripts/test.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HOTSWAP_CLIENT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hotswap-client-tests-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai, webuiapi' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "openai==3.63.0" "webuiapi==0.9.17"
fi
run="$(mktemp -d)"
mkdir -p "$run/adapters"
cp Tests/Fixtures/lora/sd1-tiny/kohya.safetensors "$run/adapters/kohya.safetensors"
cp Tests/Fixtures/lora/sd1-tiny/peft_attn.safetensors "$run/adapters/peft.safetensors"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
.build/release/hotswap serve --model Tests/Fixtures/models/sd1-tiny --adapters-dir "$run/adapters" --db "$run/t.sqlite" \
    --port "$port" --max-steps 150 --log-level warning >"$run/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$run"' EXIT
for _ in $(seq 1 120); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$run/serve.log"; exit 1; }
    sleep 0.5
done
if ! "$venv/bin/python" Scripts/client_api_check.py "http://127.0.0.1:$port"; then
    echo "--- server log"; cat "$run/serve.log"; exit 1
fi
# The timing report counts the clients' requests under their APIs.
report="$(python3 Scripts/timing-report "$run/t.sqlite" --json)"
python3 - "$report" <<'PY'
import json, sys
apis = json.loads(sys.argv[1])["apis"]
assert apis.get("a1111", 0) >= 5 and apis.get("openai", 0) >= 5, apis
print(f"timing report by API: {apis}")
PY
