#!/usr/bin/env bash
# Checks the deployment files: the Kubernetes manifests against the Kubernetes schemas with
# kubernetes-validate (PyPI, pinned, in a virtualenv outside the repository; --strict refuses
# unknown fields), and deploy/nginx/hotswap.conf with `nginx -t` when nginx is installed (the
# scale-out test also runs it). The systemd unit is not checked here (no systemd on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HOTSWAP_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hotswap-deploy-venv}"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "kubernetes-validate==1.37.0"
fi
"$venv/bin/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml
echo "deploy/kubernetes: valid against Kubernetes 1.37 (strict)"
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
if [ -x "$nginx" ]; then
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' EXIT
    mkdir -p "$dir/logs"
    printf 'error_log %s/error.log;\npid %s/nginx.pid;\nevents {}\nhttp {\n    access_log off;\n    include %s;\n}\n' \
        "$dir" "$dir" "$PWD/deploy/nginx/hotswap.conf" >"$dir/nginx.conf"
    "$nginx" -t -q -p "$dir" -c "$dir/nginx.conf"
    echo "deploy/nginx/hotswap.conf: nginx -t passed"
    # The complete configuration, as shipped (it writes only under /tmp).
    "$nginx" -t -q -c "$PWD/deploy/nginx/nginx.conf"
    echo "deploy/nginx/nginx.conf: nginx -t passed"
fi
