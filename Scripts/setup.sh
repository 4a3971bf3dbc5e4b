#!/usr/bin/env bash
# Installs the system packages Hotswap needs (Debian): OpenBLAS, libpng, SQLite, pkg-config.
set -euo pipefail
pkgs="libopenblas-dev libpng-dev libsqlite3-dev pkg-config"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
