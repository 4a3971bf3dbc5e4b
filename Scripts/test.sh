#!/usr/bin/env bash
# Installs the system packages, then runs every test in release mode (numeric code is too slow
# in debug builds). A second pass (no rebuild, ~10 s) forces the Winograd convolution onto every
# eligible layer (HOTSWAP_WINOGRAD_MIN_TILES=0): by default only maps of >= 32x32 take it, which the
# tiny fixture models barely reach, so this is what holds the parity and LoRA fuse/restore tests to it.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
swift test -c release -Xswiftc -enable-testing --package-path . "$@"
HOTSWAP_WINOGRAD_MIN_TILES=0 swift test -c release -Xswiftc -enable-testing --package-path . --skip-build "$@"
