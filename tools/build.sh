#!/usr/bin/env bash
# Configures and builds seqrelay; warnings are errors. Used by run-local.sh,
# test.sh and docker/Dockerfile alike.
# Usage: tools/build.sh [--target TARGET] [BUILD_DIR] [extra cmake args...]
#   BUILD_DIR defaults to build/; TARGET defaults to everything (relay and tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in
  -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
target=()
if [[ "${1:-}" == "--target" ]]; then
  [[ -n "${2:-}" ]] || { echo "usage: tools/build.sh [--target TARGET] [BUILD_DIR] [extra cmake args...]" >&2; exit 2; }
  target=(--target "$2")
  shift 2
fi
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" -DSEQRELAY_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)" "${target[@]}"
