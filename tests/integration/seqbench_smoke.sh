#!/usr/bin/env bash
# seqbench, the source of every performance figure, runs its three modes and
# its floors end to end on servers of its own, small: every run delivers
# every message once and in order (seqbench exits 1 otherwise), every run
# and every floor reports a figure. No figure is judged: timing is the
# bench's to print, not the suite's to assert. With --stops instead: a
# seqbench stopped midway leaves nothing running and nothing behind (a
# test of its own, which need not wait for the shards as the runs do).
# Usage: seqbench_smoke.sh SEQBENCH_BINARY [--stops]
# With SEQTEST_RELAY_BINARY set, the relays are that binary (a sanitized
# one, say).
set -euo pipefail
bench=$1
stops=0
[[ ${2:-} == --stops ]] && stops=1
relay=()
[[ -n ${SEQTEST_RELAY_BINARY:-} ]] && relay=(--relay-binary "$SEQTEST_RELAY_BINARY")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "seqbench_smoke: $*" >&2; sed 's/^/  | /' "$work/out.txt" "$work/err.txt" >&2 || true; exit 1; }

# The three modes and the floors.
runs() {
  "$bench" --mode all --count 2000 --rounds 1 --rate 200 --duration 1 --floors 20 --stages "${relay[@]}" \
    --json "$work/runs.json" >"$work/out.txt" 2>"$work/err.txt" || fail "exit status $?"

  # Every run of both paths in each mode: all sent, all received, none twice or
  # out of order, a rate and a p50.
  python3 - "$work/runs.json" <<'EOF' || fail "the runs' figures are not as expected"
import json, sys
runs = json.load(open(sys.argv[1]))
want = {(m, p) for m in ("throughput", "closed", "latency") for p in ("plain", "relay")}
got = {(r["mode"], r["path"]) for r in runs}
assert got == want and len(runs) == len(want), f"runs {sorted(got)} ({len(runs)}), expected {sorted(want)}"
for r in runs:
    sent = 2000 if r["mode"] != "latency" else 200
    assert r["sent"] == sent and r["received"] == sent, r
    assert r["duplicates"] == 0 and r["out_of_order"] == 0, r
    assert r["msg_per_s"] > 0 and r["p50_us"] > 0, r
    if r["path"] == "relay":
        assert r["hop_cpu_us_per_msg"] > 0, r
    # The hop reads and writes MQTT (read-ahead, corked writes: a few calls
    # a message) and waits; the broker makes calls for every packet.
    assert r["hop_calls_per_msg"] > 0 and r["hop_switches_per_msg"] > 0, r
    assert r["broker_calls_per_msg"] > 1, r
print("seqbench_smoke: 6 runs, every message once and in order")
EOF

  # The ratios, the relay's stages, and every floor with a positive p50.
  [[ $(grep -Ec 'median msg/s: .* relay / plain = [0-9.]+$' "$work/out.txt") -eq 2 ]] || fail "not two throughput ratios"
  grep -Eq 'relay - plain = [-+][0-9]+ us at p50' "$work/out.txt" || fail "no added latency"
  for stage in intake_queue sequence insert commit puback; do
    grep -Eq "^    $stage +[1-9][0-9]* " "$work/out.txt" || fail "no count for the relay's stage $stage"
  done
  # Every floor: each line of the floors (a label, then mean, p50 and p99)
  # with a positive p50, and each kind there by name.
  sed -n '/^database floors/,$p' "$work/out.txt" | grep -E '^ +[^ ].* +[0-9]+ +[0-9]+ +[0-9]+$' >"$work/floors.txt" ||
    fail "no floors"
  floors=$(wc -l <"$work/floors.txt")
  [[ $floors -eq 25 ]] || fail "$floors floor lines, expected 25"
  while IFS= read -r line; do
    p50=$(awk '{print $(NF-1)}' <<<"$line")
    [[ $p50 -gt 0 ]] || fail "a floor with p50 $p50: $line"
  done <"$work/floors.txt"
  for what in "round trip (prepared SELECT 1)" "one-row INSERT (prepared)" "COMMIT of it (redo log flush)" \
              "fence UPDATE + INSERT, one query" "COMMIT of it" "the three in one query" "the first's COMMIT returns" \
              "the second's held fence UPDATE returns" "back to back" "one every 10 ms"; do
    grep -qF -- "$what" "$work/floors.txt" || fail "no floor '$what'"
  done
  for rate in 100 1000 5000; do
    for inflight in one two "one, in query" "one, appended"; do
      grep -qE -- " $rate msg/s, $inflight, [0-9]+ batches " "$work/floors.txt" || fail "no writer at $rate msg/s, $inflight"
    done
  done
  grep -q "the disk alone, 512 B pwrite" "$work/out.txt" || fail "the disk of seqbench's own server not measured"
  echo "seqbench_smoke: ratios, 5 stages and $floors floors reported"
}

# A seqbench stopped midway: by SIGINT (Ctrl-C, which mariadbd ignores)
# it ends its servers and relays and removes their directory, exit 130; by
# SIGKILL its children still end (their parent-death signal).
alive() {  # the children not yet ended (a zombie waits only for its reaping)
  local pid
  for pid in "${children[@]}"; do
    if [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [^Z]* ]]; then echo "$pid"; fi
  done
}
stop_midway() {  # signal
  "$bench" --mode latency --rate 100 --duration 60 --rounds 1 "${relay[@]}" >"$work/out.txt" 2>"$work/err.txt" &
  bench_pid=$!
  children=() names=
  for ((i = 0; i < 600; i++)); do
    mapfile -t children < <(pgrep -P "$bench_pid" || true)
    names=
    ((${#children[@]})) && names=$(ps -o comm= -p "$(IFS=,; echo "${children[*]}")" | sort | tr '\n' ' ' || true)
    [[ $names == *mariadbd* && $names == *mosquitto* && $names == *seqbench* && $names == *seqrelay* ]] && break
    sleep 0.1
  done
  [[ $names == *mariadbd* && $names == *mosquitto* && $names == *seqrelay* ]] ||
    { kill -KILL "$bench_pid"; fail "seqbench started not all of its servers and relay: $names"; }
  # Its servers' directory, which a SIGKILL leaves.
  datadir=
  for pid in "${children[@]}"; do
    [[ -n $datadir ]] || datadir=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null |
                                   sed -n 's|^--datadir=\(/tmp/seqtest-[^/]*\)/db$|\1|p')
  done
  [[ -n $datadir ]] || { kill -KILL "$bench_pid"; fail "no datadir of seqbench's MariaDB found"; }
  trap 'rm -rf "$work" "'"$datadir"'"' EXIT
  status=0
  { kill "-$1" "$bench_pid" && wait "$bench_pid"; } 2>/dev/null || status=$?  # (and bash's "Killed" line)
  for ((i = 0; i < 100; i++)); do
    [[ -z $(alive) ]] && break
    sleep 0.1
  done
  left=$(alive | tr '\n' ' ')
  if [[ -n $left ]]; then
    left=${left% }
    running=$(ps -o pid=,comm= -p "${left// /,}" | tr -s '\n ' ' ')
    kill -KILL $left 2>/dev/null || true
    fail "seqbench stopped by SIG$1 left running:$running"
  fi
}
stops() {
  stop_midway INT
  [[ $status -eq 130 ]] || fail "seqbench stopped by SIGINT exited $status, not 130"
  [[ ! -e $datadir ]] || fail "seqbench stopped by SIGINT left $datadir"
  grep -q "seqbench: Interrupt: stopped [0-9]* processes it had started and removed [0-9]* directories" "$work/err.txt" ||
    fail "seqbench stopped by SIGINT said nothing of it"
  echo "seqbench_smoke: SIGINT: exit 130, none of its ${#children[@]} processes (${names% }) left, its directory removed"
  stop_midway KILL
  echo "seqbench_smoke: SIGKILL: none of its ${#children[@]} processes (${names% }) left running"
}

if ((stops)); then stops; else runs; fi
