#!/usr/bin/env bash
# Installs the system packages, then runs every test in release mode (numeric code is too slow
# in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
swift test -c release -Xswiftc -enable-testing --package-path . "$@"
