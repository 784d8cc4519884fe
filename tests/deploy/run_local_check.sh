#!/usr/bin/env bash
# The README's first command, tools/run-local.sh, as a user runs it, on a
# state directory and ports of its own (the packages, the build and the npm
# packages in place, as tools/test-clients.sh leaves them):
#  1. it starts MariaDB, mosquitto and the relay: a message published on a
#     raw topic arrives framed on seq/<topic> and is in MSG;
#  2. a second run on the same state directory stops at once and says why
#     (it used to pick other ports and fail after about 30 s);
#  3. Ctrl-C (SIGINT to the script's process group, as a terminal sends it)
#     stops the relay, mosquitto and MariaDB, and the script exits 0;
#  4. a run after it keeps the history: the numbering goes on after the stored SEQs;
#  5. a run killed with SIGKILL leaves its servers, and the lock with them:
#     the next run names their pids; they are then stopped here by those pids.
# Usage: run_local_check.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" && pwd)
PATH=$PATH:/usr/sbin:/sbin
state=$(mktemp -d /tmp/seqrunlocal-XXXXXX)
log=$state.log
runner=
trap 'if [[ -n $runner ]]; then kill -TERM -- "-$runner" 2>/dev/null || true; fi
      if [[ -f $state/run-local.pids ]]; then kill -TERM $(<"$state/run-local.pids") 2>/dev/null || true; fi
      left=$(pgrep -f "$state/" || true)  # (only ours: the path is this run'"'"'s own)
      if [[ -n $left ]]; then kill -TERM $left 2>/dev/null || true; fi
      for _ in $(seq 100); do pgrep -f "$state/" >/dev/null || break; sleep 0.1; done
      rm -rf "$state" "$log" "$log.2"' EXIT
fail() { echo "run_local_check: $*" >&2; sed 's/^/  | /' "$log" >&2 || true; exit 1; }

read -r mqtt_port db_port ws_port < <(/usr/bin/python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
export STATE_DIR=$state BUILD_DIR=$build MQTT_PORT=$mqtt_port DB_PORT=$db_port WS_PORT=$ws_port
sql() { mariadb --no-defaults -S "$state/mysqld.sock" -uroot seqrelay -N -e "$1"; }

# Starts run-local.sh in a process group of its own, as a terminal's
# foreground job is, and waits until the relay holds its shard and its
# intake has subscribed.
start() {
  : >"$log"
  setsid "$root/tools/run-local.sh" >>"$log" 2>&1 &
  runner=$!
  for _ in $(seq 1200); do
    if grep -q 'active: holding shard' "$log" && grep -q 'intake: subscribed' "$log"; then return; fi
    kill -0 "$runner" 2>/dev/null || fail "run-local.sh exited before the relay was ready"
    sleep 0.1
  done
  fail "the relay was not ready after 120 s"
}
# Publishes on chat/room1 until a frame arrives on seq/chat/room1 (the
# subscriber may not be subscribed yet when the first goes), and prints
# the frame as hex.
frame() {
  local out=$state/frame.txt
  mosquitto_sub -p "$mqtt_port" -t seq/chat/room1 -C 1 -W 20 -F '%x' >"$out" &
  local sub=$!
  for _ in $(seq 100); do
    [[ -s $out ]] && break
    mosquitto_pub -p "$mqtt_port" -t chat/room1 -q 1 -m "$1"
    kill -0 "$sub" 2>/dev/null || break
    sleep 0.2
  done
  wait "$sub" || fail "no frame on seq/chat/room1"
  cat "$out"
}
# The frame (docs/PROTOCOL.md 2): topic id (4 bytes), SEQ (5), the
# ordering flag (1), then the payload; in hex, SEQ is digits 8 to 17.
seq_of() { echo $((16#${1:8:10})); }
payload_hex() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; }
stopped() {  # waits for the script to exit; its status in $status
  status=0
  wait "$runner" 2>/dev/null || status=$?
  runner=
}

# 1. The system runs end to end.
start
# (`frame` may publish more than once before its subscriber is there: the
# frame seen may be a later copy; MSG says where the numbering began.)
f=$(frame hello)
[[ ${f:20} == "$(payload_hex hello)" ]] || fail "frame $f: expected payload hello"
[[ $(sql "SELECT MSG FROM MSG WHERE ID = 'chat/room1' AND SEQ = 1") == hello ]] || fail "SEQ 1 is not hello in MSG"

# 2. A second run on the same state directory refuses at once.
t0=$(date +%s%N)
rc=0
timeout 60 env -u MQTT_PORT -u DB_PORT -u WS_PORT "$root/tools/run-local.sh" >"$log.2" 2>&1 || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
grep -q "is in use by another run-local.sh" "$log.2" || { cat "$log.2" >&2; fail "the second run did not say the state is in use (exit $rc after $ms ms)"; }
((rc == 1)) || fail "the second run exited $rc, expected 1"
((ms < 10000)) || fail "the second run took $ms ms to refuse"

# 3. Ctrl-C stops all three.
stored=$(sql "SELECT MAX(SEQ) FROM MSG WHERE ID = 'chat/room1'")
pids=$(cut -d' ' -f2- "$state/run-local.pids")
kill -INT -- "-$runner"
stopped
((status == 0)) || fail "run-local.sh exited $status after Ctrl-C, expected 0"
grep -q 'run-local: stopped (data kept' "$log" || fail "no 'stopped' line"
for pid in $pids; do
  ! kill -0 "$pid" 2>/dev/null || fail "process $pid (a server or the relay) still runs after Ctrl-C"
done

# 4. The history is kept.
start
f=$(frame again)
[[ $(seq_of "$f") -gt $stored && ${f:20} == "$(payload_hex again)" ]] ||
  fail "frame after the restart $f: expected a SEQ above $stored, payload again"
first_again=$(sql "SELECT MIN(SEQ) FROM MSG WHERE ID = 'chat/room1' AND MSG = 'again'")
((first_again == stored + 1)) || fail "after the restart the numbering began at $first_again, expected $((stored + 1))"

# 5. SIGKILL leaves the servers, which keep the state directory locked.
kill -KILL "$runner"
stopped
left=$(<"$state/run-local.pids")
rc=0
timeout 60 "$root/tools/run-local.sh" >"$log.2" 2>&1 || rc=$?
((rc == 1)) && grep -q "(pids: $left )" "$log.2" || { cat "$log.2" >&2; fail "a run after a SIGKILL exited $rc, not naming pids $left"; }
echo "run_local_check: runs, refuses a second run, stops on Ctrl-C, keeps the history, holds its lock while its servers live"
