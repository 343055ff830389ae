#!/usr/bin/env bash
# README command (a): set up, build, and run gsoft's main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/gsoft quickstart "$@"
