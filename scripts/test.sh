#!/usr/bin/env bash
# README command (b): set up, build, and run every test. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
jobs=$(nproc 2>/dev/null || echo 2)
exec ctest --test-dir build --output-on-failure -j "$jobs"
