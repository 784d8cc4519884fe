#!/usr/bin/env bash
# The whole test suite, from a fresh Debian bookworm machine: installs what is
# missing, builds, and runs every test on real servers started on loopback.
#
#   1. release build; unit tests, the integration shards (tests/integration,
#      each shard with its own mosquitto and MariaDB) and the client tests
#      (JavaScript, Python, the messenger in Chromium) side by side, while
#      the sanitizer build runs at the lowest priority;
#   2. the integration shards against the relay built with AddressSanitizer
#      and UBSan, and beside them the container path: the relay image made
#      of step 1's programs, then the compose stacks run under podman
#      (tools/test-docker.sh --prebuilt build).
# The tests mostly wait on servers and paced loads; the builds beside them
# (nice 19) take the idle cores.
#
# Usage: tools/test.sh [--quick | --long]
#   --quick  step 1 only
#   --long   the long forms of the scenarios (SEQTEST_LONG) in step 1, the
#            three that load the machine for minutes (the soak, a 10 GiB
#            history, a million rows purged) one at a time after the rest;
#            every test binary built with the sanitizers, not only the relay,
#            file by file rather than as a unity build (the unit tests under
#            the sanitizers run only here), the scenarios' short forms
#            against them; the relay image compiled from source by
#            docker/Dockerfile, as `docker compose build` does
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=default
usage() { echo "usage: tools/test.sh [--quick | --long] (see --help)" >&2; exit 2; }
case "${1:-}" in
  --quick) mode=quick ;;
  --long) mode=long; export SEQTEST_LONG=1 ;;
  "") ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) usage ;;
esac
(($# <= 1)) || usage
if [[ $(id -u) -ne 0 ]]; then
  # The test servers' data folders are made with mariadb-install-db
  # --user=root, and the container checks run podman as root.
  echo "tools/test.sh: run it as root (sudo tools/test.sh)" >&2
  exit 2
fi

start=$(date +%s)
# Each mark also says how busy the machine's CPUs were since the last one
# (from /proc/stat): where the suite waits and where it computes.
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6; exit }' /proc/stat; }
read -r busy_was idle_was < <(cpu_ticks)
stamp() {
  local busy idle
  read -r busy idle < <(cpu_ticks)
  local total=$(( busy - busy_was + idle - idle_was ))
  echo "== [$(( $(date +%s) - start )) s] $* (CPUs $(( total > 0 ? 100 * (busy - busy_was) / total : 0 ))% busy since the last mark)"
  busy_was=$busy idle_was=$idle
}

# Background jobs, their logs, and on any exit: whatever still runs is
# ended. Each job is the leader of a process group of its own (setsid, which
# execs in place: a background job is no group leader, so $! is the group's
# id), and the exit signals the whole group: the servers, browser and
# builds the job started, however deep, not only its direct children.
docker_log=$(mktemp /tmp/seqdocker-XXXXXX.log)
clients_log=$(mktemp /tmp/seqclients-XXXXXX.log)
asan_log=$(mktemp /tmp/seqasan-XXXXXX.log)
docker_prep= clients_pid= asan_pid= images_pid= step_pid=
trap 'for pid in $docker_prep $clients_pid $asan_pid $images_pid $step_pid; do kill -TERM -- "-$pid"; done 2>/dev/null || true
      rm -f "$clients_log" "$docker_log" "$asan_log"' EXIT

# A step waited for (a build, a ctest run), in a process group of its own
# as the jobs are: a SIGTERM to this script ends it too, with the servers
# it started. (A foreground child in this shell's group carried on under
# init, ctest's shards and their servers with it; Ctrl-C reached it only
# because a terminal signals the whole group.)
step() {
  local rc=0
  setsid "$@" &
  step_pid=$!
  wait "$step_pid" || rc=$?
  step_pid=
  return "$rc"
}

"$root/tools/deps.sh"

# The container stage's tools, base images, stand-in images and the relay
# image's package stages (network and dpkg, at the lowest priority) are made
# while the relay builds. Without --long, the relay image ships the release
# build's programs (the ones the tests below run; tools/test-docker.sh
# --prebuilt): no compiler stage, and nothing left for later but putting
# them in. --long compiles them in the image, as docker/Dockerfile does
# for users.
docker_binaries=(--prebuilt "$root/build")
[[ $mode == long ]] && docker_binaries=()
if [[ $mode != quick ]]; then
  setsid "$root/tools/test-docker.sh" --prepare "${docker_binaries[@]}" >"$docker_log" 2>&1 &
  docker_prep=$!
fi

# Runs the client tests in the background; clients_wait reports them.
clients_start() { setsid "$root/tools/test-clients.sh" "$1" >"$clients_log" 2>&1 & clients_pid=$!; }
clients_wait() {
  local rc=0
  wait "$clients_pid" || rc=$?
  # What the group still holds (a failed test's servers or browser) goes
  # now: the exit trap must not signal the PID once reaped, as it may be
  # another process's by then (the group's id stays ours while a member lives).
  kill -TERM -- "-$clients_pid" 2>/dev/null || true
  clients_pid=
  if ((rc != 0)); then
    cat "$clients_log"
    echo "== client tests FAILED"
    return 1
  fi
  tail -n 3 "$clients_log"
}

# ctest side by side: the integration shards mostly wait on servers and
# paced loads, so more of them than cores run well; but not all fifteen
# at once: the CPUs are then saturated, and the load scenarios (the soak's
# latency, a stop's deadline) measure the machine instead of the relay.
# The longest start first (their COST).
# jobs=N: that many shards side by side instead; short_forms=1: the
# scenarios' short forms (SEQTEST_LONG unset). Each shard's time limit is
# its own where it has one (tests/integration/CMakeLists.txt), else 900 s.
run_ctest() {  # build dir, extra ctest args...
  local dir=$1 env_args=()
  shift
  [[ -n ${short_forms:-} ]] && env_args=(-u SEQTEST_LONG)
  step env "${env_args[@]}" ctest --test-dir "$dir" --output-on-failure --timeout 900 -j "${jobs:-8}" "$@"
}
# The long forms that load the machine for minutes, or measure its latency
# under their load: beside seven other shards on two cores they measured
# the machine (a purge of a million rows at a fifth of its rate alone, the
# live p99 beside it 545 ms, in a run of 2026-12-07).
long_loads='^integration_(soak|history|retention_figures)$'

stamp "release: build"
# Release, as the image ships it (no debug info: a quarter of the build).
step "$root/tools/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=Release
asan=(-DSEQRELAY_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug)
asan_build() { "$root/tools/build.sh" --target seqrelay "$root/build-asan" "${asan[@]}"; }

stamp "release: tests"
clients_start "$root/build"
if [[ $mode == default ]]; then
  setsid nice -n 19 bash -c "$(declare -p asan root); $(declare -f asan_build); asan_build" >"$asan_log" 2>&1 &
  asan_pid=$!
fi
if [[ $mode == long ]]; then
  run_ctest "$root/build" -E "$long_loads"
  clients_wait
  stamp "release: the long loads, one at a time"
  jobs=1 run_ctest "$root/build" -R "$long_loads"
else
  run_ctest "$root/build"
  clients_wait
fi
stamp "release: passed"
[[ $mode == quick ]] && { stamp "all tests passed (--quick)"; exit 0; }

# The container path beside the sanitizer stage (not beside the release
# tests: with both builds there, a broker-kill scenario lost messages that
# the relay, starved, had not taken in time): the relay image made (with
# --long, compiled at the lowest priority), then the compose stacks run
# and checked. They mostly wait for containers to become healthy, which
# leaves the CPUs to the scenarios.
if [[ $mode == long ]]; then
  docker_run="nice -n 19 '$root/tools/test-docker.sh' --images && '$root/tools/test-docker.sh'"
else
  docker_run="'$root/tools/test-docker.sh' --prebuilt '$root/build'"
fi
setsid bash -c "while kill -0 $docker_prep 2>/dev/null; do sleep 1; done; $docker_run" >>"$docker_log" 2>&1 &
images_pid=$!

# Sanitizers slow everything down: the tests' deadlines scale with this.
export SEQTEST_TIME_FACTOR=4
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [[ $mode == long ]]; then
  # Each file compiled alone (no unity build): shows a file that does not
  # include what it uses.
  stamp "asan+ubsan: build (everything, file by file)"
  step "$root/tools/build.sh" "$root/build-asan" "${asan[@]}" -DCMAKE_UNITY_BUILD=OFF
  stamp "asan+ubsan: tests"
  # The short forms: the long ones are loads and durations, which the
  # sanitizers only slow (step 1 ran them).
  short_forms=1 run_ctest "$root/build-asan"
else
  # The relay under the sanitizers (built beside the release tests: their
  # latency figures are a little noisier for it); the scenarios run from
  # the release test binary against it.
  stamp "asan+ubsan: build (relay)"
  wait "$asan_pid" || { kill -TERM -- "-$asan_pid" 2>/dev/null; cat "$asan_log"; echo "== asan+ubsan: build FAILED"; exit 1; }
  asan_pid=
  stamp "asan+ubsan: tests"
  # seqbench's smoke run once, in the release stage: its bursts beside the
  # container checks slow their podman commands. So are the shards whose
  # point is the relay's memory figures (integration_history,
  # integration_replay_memory: hundreds of MiB of replies, and figures that
  # mean nothing under the sanitizers); the replay path runs sanitized in
  # integration_retransmit. And the Galera shards (three MariaDB nodes
  # each, the CPU the container stage beside needs): the relay's code on
  # them is the code the other shards run sanitized, but for the causal
  # reads' statements and the retry of a certification conflict. And the
  # packet ids' round (65,534 messages through the relay, a load the
  # sanitizers only slow; the filter's rule runs in the unit tests).
  SEQTEST_RELAY_BINARY="$root/build-asan/relay/seqrelay" SEQTEST_RELAY_SANITIZED=1 \
    run_ctest "$root/build" -L integration -E 'integration_(seqbench|seqbench_stops|history|replay_memory|galera|galera_quorum|faults_packet_ids)$'
fi
stamp "asan+ubsan: passed"

stamp "containers (run beside the sanitizer stage)"
wait "$docker_prep" || { cat "$docker_log"; echo "== containers: preparing FAILED"; exit 1; }
docker_prep=
wait "$images_pid" || {
  cat "$docker_log"
  # The reason again, last (the services' logs above it are long).
  grep -E '^(== docker|test-docker:)' "$docker_log" | tail -n 6 || true
  echo "== containers FAILED"; exit 1; }
images_pid=
grep '^== docker' "$docker_log"
stamp "all tests passed"
