#!/usr/bin/env bash
# The client tests: the JavaScript library (node --test, with the messenger
# page in headless Chromium) and the Python library (pytest), each against
# its own real relay, mosquitto and MariaDB on loopback; and beside them
# tools/run-local.sh as a user runs it (tests/deploy/run_local_check.sh,
# which needs the npm packages installed here first: run-local.sh would
# install them too).
#
# Usage: tools/test-clients.sh BUILD_DIR     (the relay is BUILD_DIR/relay/seqrelay)
#
# Installs what is missing first: Debian packages with apt-get (only those
# not installed), the npm packages of clients/js with npm ci (mqtt,
# puppeteer-core without its browser download, typescript). The JavaScript
# and Python suites run side by side; each owns its servers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  ""|-*) echo "usage: tools/test-clients.sh BUILD_DIR (see --help)" >&2; exit 2 ;;
esac
(($# == 1)) || { echo "usage: tools/test-clients.sh BUILD_DIR (see --help)" >&2; exit 2; }
build=$(cd "$1" && pwd) || { echo "test-clients: no directory $1" >&2; exit 2; }
relay=$build/relay/seqrelay
[[ -x $relay ]] || { echo "test-clients: no relay at $relay: build first" >&2; exit 1; }
start=$(date +%s)

# Debian packages, installed only when missing.
missing=()
for pkg in mosquitto mosquitto-clients mariadb-server mariadb-client chromium python3-paho-mqtt python3-pytest \
           python3-setuptools python3-pip; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "== test-clients: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo dpkg --configure -a >/dev/null 2>&1 || true  # an install stopped half way (a run ended meanwhile)
  # Two commands: under set -e a failure left of && would not stop the script.
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
fi

# npm packages: again only when package-lock.json changed since the last
# install, or when the test-only ones are missing (tools/run-local.sh
# installs the runtime ones alone: npm ci --omit=dev).
js=$root/clients/js
if [[ ! -f $js/node_modules/.package-lock.json || $js/package-lock.json -nt $js/node_modules/.package-lock.json ||
      ! -d $js/node_modules/puppeteer-core || ! -d $js/node_modules/typescript ]]; then
  echo "== test-clients: npm ci"
  (cd "$js" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi

logs=$(mktemp -d /tmp/seqclients-XXXXXX)
# Each job is a process group of its own (setsid: a background job is no
# group leader, so setsid execs in place and $! is the group's id), ended
# whole on any exit, a signal's too: an interrupted run left its servers
# (mariadbd ignores SIGINT) and browser running.
groups=()
trap 'for pid in "${groups[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done; rm -rf "$logs"' EXIT
export SEQTEST_RELAY_BINARY=$relay

run() {  # name, command...: runs in the background, output to $logs/name.log
  local name=$1
  shift
  # set +e: a failing command must still leave its exit code.
  setsid bash -c 'set +e; "$@" >"$0.log" 2>&1; echo $? >"$0.rc"' "$logs/$name" "$@" &
  groups+=("$!")
}
run js node --test --test-concurrency=2 "$js"/test/*.test.js
run python /usr/bin/python3 -m pytest -q -p no:cacheprovider "$root/clients/python/tests"
# Packaging: a wheel of the Python package and the npm tarball's contents.
run pack bash -c "cd '$root/clients/python' && /usr/bin/python3 -m pip wheel -q --no-deps --no-build-isolation -w '$logs/wheel' . &&
  rm -rf build seqrelay_client.egg-info && cd '$js' && npm pack --dry-run --silent >/dev/null"
run run_local "$root/tests/deploy/run_local_check.sh" "$build"
wait

failed=0
for name in js python pack run_local; do
  rc=$(cat "$logs/$name.rc")
  if [[ $rc != 0 ]]; then
    failed=1
    echo "== test-clients: $name FAILED (exit $rc):"
    cat "$logs/$name.log"
  fi
done
grep -E '^# (tests|pass|fail) ' "$logs/js.log" | tr '\n' ' ' | sed 's/^/== test-clients: node: /;s/$/\n/'
echo "== test-clients: pytest: $(tail -1 "$logs/python.log")"
echo "== test-clients: $(tail -1 "$logs/run_local.log")"
((failed == 0)) || exit 1
echo "== test-clients: all client tests passed in $(($(date +%s) - start)) s"
