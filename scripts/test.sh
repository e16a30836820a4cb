#!/usr/bin/env bash
# The test suite: unit tests, integration tests with real containers and the simulator.
# Builds the demo agent's image first when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
docker image inspect apf-demo-agent:latest >/dev/null 2>&1 || scripts/build-demo-image.sh
cargo test --workspace --no-fail-fast --lib --bins --tests "$@"
