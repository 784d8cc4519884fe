#!/usr/bin/env bash
# Configures and builds seqrelay; warnings are errors. Used by run-local.sh,
# test.sh and docker/Dockerfile alike.
# Usage: tools/build.sh [--target TARGET] [BUILD_DIR] [extra cmake args...]
#   BUILD_DIR defaults to build/; TARGET defaults to everything (relay and tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=()
if [[ "${1:-}" == "--target" ]]; then
  target=(--target "$2")
  shift 2
fi
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" -DSEQRELAY_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)" "${target[@]}"
