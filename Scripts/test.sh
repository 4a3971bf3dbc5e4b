#!/usr/bin/env bash
# Installs the system packages, then runs every test in release mode (numeric code is too slow
# in debug builds). A second pass (no rebuild, ~10 s) forces the Winograd convolution onto every
# eligible layer (HOTSWAP_WINOGRAD_MIN_TILES=0): by default only maps of >= 32x32 take it, which the
# tiny fixture models barely reach, so this is what holds the parity and LoRA fuse/restore tests to it.
# Then the AVX2 kernels (whole suite, with Winograd F(4x4, 3x3) forced where F(2x2) would run: by
# default it only takes 64x64 maps) and the baseline x86-64 kernels (kernel tests), which this
# AVX-512 machine would otherwise never run (HOTSWAP_ISA caps CKernels' dispatch). Last, the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/setup.sh
swift test -c release -Xswiftc -enable-testing --package-path . "$@"
HOTSWAP_WINOGRAD_MIN_TILES=0 swift test -c release -Xswiftc -enable-testing --package-path . --skip-build "$@"
HOTSWAP_ISA=avx2 HOTSWAP_WINOGRAD_MIN_TILES=0 HOTSWAP_WINOGRAD_F43_MIN_TILES=0 swift test -c release -Xswiftc -enable-testing --package-path . --skip-build "$@"
HOTSWAP_ISA=baseline swift test -c release -Xswiftc -enable-testing --package-path . --skip-build --filter KernelTests "$@"
# The fuzzers (mutated adapter files through load + apply + render; mutated raw HTTP against a live
# server), bounded in time; each prints its seed and input count (HOTSWAP_FUZZ_SEED replays one).
# One at a time: the adapter fuzzer keeps a thread of Swift's small concurrency pool busy, which the
# live server's route handlers need.
for suite in AdapterFuzzTests HTTPRobustnessTests; do
    HOTSWAP_FUZZ_SECONDS="${HOTSWAP_FUZZ_SECONDS:-60}" swift test -c release -Xswiftc -enable-testing --package-path . \
        --skip-build --filter "$suite" "$@"
done
# Property-based API tests from docs/openapi.yaml against a live server (schemathesis).
Scripts/api-property-tests.sh
# The A1111 and OpenAI routes with the real `webuiapi` and `openai` packages against a live server.
Scripts/client-api-tests.sh
# Scale-out on loopback: 3 replicas behind nginx (installed when missing), affinity and failover.
Scripts/scale-out-test.sh
# The deployment files: Kubernetes manifests (kubernetes-validate, strict) and the nginx config.
Scripts/validate-deploy.sh
