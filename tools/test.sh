#!/usr/bin/env bash
# The whole test suite, from a fresh Debian bookworm machine:
#   installs what is missing, builds, and runs every test (unit and
#   integration, on real mosquitto and MariaDB started on loopback), first in
#   a normal build, then again under AddressSanitizer and UBSan; then the
#   container image and compose stack (tools/test-docker.sh).
# Usage: tools/test.sh [--quick]     --quick skips the sanitizer pass and the containers
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

"$root/tools/deps.sh"

run_suite() {  # build dir, label, extra cmake args...
  local dir=$1 label=$2
  shift 2
  echo "== $label: build"
  "$root/tools/build.sh" "$dir" "$@"
  echo "== $label: test"
  (cd "$dir" && ctest --output-on-failure --timeout 900)
}

start=$(date +%s)
run_suite "$root/build" "release"
"$root/tools/test-clients.sh" "$root/build"  # JavaScript, Python and the messenger in Chromium
if ((quick == 0)); then
  # Sanitizers slow everything down: the tests' deadlines scale with this.
  export SEQTEST_TIME_FACTOR=4
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite "$root/build-asan" "asan+ubsan" -DSEQRELAY_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
fi
# The image built and the compose stack run for real (podman; about 2 min
# once the base images are cached, see README "Deploy with Docker").
((quick)) || "$root/tools/test-docker.sh"
echo "== all tests passed in $(( $(date +%s) - start )) s"
