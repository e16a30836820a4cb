#!/usr/bin/env bash
# Install the Python test dependencies: the pinned official openai SDK that
# tests/sim_openai_sdk.rs drives against `apf sim`. Safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install --quiet -r tests/sdk/requirements.txt
