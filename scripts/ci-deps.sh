#!/usr/bin/env bash
# System packages the test suite needs beyond Rust and Docker: Chromium, for the test that
# opens `apf report`'s page in a real headless browser (tests/report_page.rs). Debian's own
# package, so nothing is fetched from elsewhere.
set -euo pipefail
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update && $sudo apt-get install -y chromium
