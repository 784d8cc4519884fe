#!/usr/bin/env bash
# The fault suite on its own, with its table: every scenario runs a bounded
# load through real mosquitto, MariaDB and the relay, audits MSG and what an
# ordered subscriber received, and adds one row to the table printed at the
# end (and written to OUT, default build/faults.md).
#
# Usage: tools/faults.sh [--long] [OUT]
#   --long   the long form: a 30 s MariaDB outage instead of 10 s, and a
#            10-minute soak instead of 20 s
# The README's test command (tools/test.sh) runs the same scenarios in the
# short form as part of the integration suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=""
for arg in "$@"; do
  case "$arg" in
    --long) export SEQTEST_LONG=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "faults: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
out=${out:-$root/build/faults.md}

"$root/tools/deps.sh"
"$root/tools/build.sh" "$root/build"
mkdir -p "$(dirname "$out")"
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
start=$(date +%s)
status=0
SEQTEST_FAULT_TABLE=$rows "$root/build/tests/integration/integration_tests" --gtest_filter='FaultE2E.*:OutageE2E.*:SoakE2E.*' || status=$?
{
  echo "Produced by \`tools/faults.sh${SEQTEST_LONG:+ --long}\` on $(date -u +%Y-%m-%d), $(nproc) cores."
  echo
  echo "| scenario | sent | acknowledged | stored | delivered | lost | duplicates | gaps | relay peak RSS | time to recover |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  cat "$rows"
} > "$out"
echo
cat "$out"
echo
echo "== faults: $( ((status == 0)) && echo "all scenarios passed" || echo "FAILED") in $(( $(date +%s) - start )) s; table: $out"
exit "$status"
