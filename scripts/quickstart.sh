#!/usr/bin/env bash
# The quickstart in one command: build apf and the demo agent's image when missing, then run
# the quickstart experiment against apf's built-in OpenRouter simulator. No account, no money.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --quiet --bin apf
if ! docker image inspect apf-demo-agent:latest >/dev/null 2>&1; then
  scripts/build-demo-image.sh
fi

apf=target/release/apf
"$apf" validate examples/experiments/quickstart.toml
"$apf" apply --sim --auto-approve examples/experiments/quickstart.toml
"$apf" runs --manifest examples/experiments/quickstart.toml
