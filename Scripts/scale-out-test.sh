#!/usr/bin/env bash
# Scale-out on loopback: 3 replicas of the tiny fixture model behind nginx (Scripts/cluster with
# deploy/nginx/hotswap.conf), affinity and failover checked from each replica's /metrics
# (Scripts/scale_out_check.py). Installs Debian's nginx when it is missing. Needs the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    # policy-rc.d or not, the packaged service is not needed: Scripts/cluster runs its own nginx.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx
fi
python3 Scripts/scale_out_check.py test --model Tests/Fixtures/models/sd1-tiny \
    --adapter-file Tests/Fixtures/lora/sd1-tiny/kohya.safetensors --replicas 3 --adapters 6
