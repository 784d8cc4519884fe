#!/usr/bin/env bash
# The standard performance set: seqbench runs the relay and the plain
# mosquitto path side by side (each run starts its own mosquitto and MariaDB
# on loopback), and this script collects the figures into one summary and a
# PNG plot of latency against offered load.
#
# Usage: tools/bench.sh [--quick] [--profile] [OUT_DIR]
#   OUT_DIR     where the logs, CSV files, summary.md and latency.png go
#               (default build/bench)
#   --quick     fewer rounds, shorter runs (a smoke check, about a minute)
#   --profile   also record a perf profile of the relay during a throughput
#               run and write the top of it to profile.txt
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
quick=0
profile=0
out=""
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --profile) profile=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
out=${out:-$root/build/bench}

extra=(gnuplot-nox)
((profile)) && extra+=(linux-perf)
"$root/tools/deps.sh" "${extra[@]}"
"$root/tools/build.sh" --target seqbench "$root/build"
bench=$root/build/tools/seqbench
mkdir -p "$out"

if ((quick)); then
  rounds=1 ratio_rounds=1 count=20000 big=100000 duration=2 rates=100,1000,5000
else
  # The throughput ratios get more rounds: the plain path's own rate varies
  # by a fifth from run to run on a virtual machine.
  rounds=3 ratio_rounds=5 count=50000 big=200000 duration=4 rates=100,500,1000,2000,5000,10000,15000
fi

run() {  # name, seqbench args...
  local name=$1
  shift
  echo "== bench: $name: seqbench $*"
  "$bench" "$@" --csv "$out/$name.csv" | tee "$out/$name.txt"
}

start=$(date +%s)
profile_args=()
((profile)) && profile_args=(--perf "$out/relay.perf.data")
run throughput --mode throughput --count "$count" --rounds "$ratio_rounds" --journal-cost "${profile_args[@]}"
run closed --mode closed --count "$count" --rounds "$ratio_rounds" --msg-ids
run latency --mode latency --rate "$rates" --duration "$duration" --rounds "$rounds" --journal-cost --stages \
  --floors 2000
run topics-10k --mode throughput --count "$count" --rounds "$ratio_rounds" --topics 10000
run topics-100k --mode throughput --count "$big" --rounds 1 --topics 100000

# ---- Summary --------------------------------------------------------------------
# (Of an even count, the mean of the two middle values, as seqbench's.)
median() { sort -g | awk '{v[NR]=$1} END {print (NR == 0 ? 0 : NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2)}'; }
col() {  # file, path, rate, column name: that column of the matching rows
  awk -F, -v path="$2" -v rate="$3" -v name="$4" '
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    $c["path"] == path && $c["rate"] == rate { print $c[name] }' "$1"
}
m() { col "$@" | median; }
# The lowest and highest of the per-round ratios of a path to plain (rounds
# alternate the paths, so round k of each ran side by side).
spread() {  # file, path
  awk -F, -v path="$2" '
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    $c["path"] == "plain" { p[$c["round"]] = $c["msg_per_s"] }
    $c["path"] == path { r[$c["round"]] = $c["msg_per_s"] }
    END {
      for (k in r) if (p[k] > 0) { x = r[k] / p[k]; if (lo == "" || x < lo) lo = x; if (hi == "" || x > hi) hi = x }
      if (lo == "") print "-"; else printf "%.2f to %.2f\n", lo, hi
    }' "$1"
}
calc() { awk "BEGIN { print $1 }"; }

{
  echo "Produced by \`tools/bench.sh$( ((quick)) && echo " --quick")\` on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(date -u +%Y-%m-%d)."
  echo "Medians over $ratio_rounds round(s) per throughput cell and $rounds per latency cell (per round: the range of"
  echo "the ratio over the rounds, each beside its plain run); 20-byte QoS 1 messages; the relay commits every message to MariaDB"
  echo "(innodb_flush_log_at_trx_commit=1) before it publishes it."
  echo
  echo "| throughput, msg/s | plain | relay | relay / plain | per round | relay without journal | its ratio |"
  echo "|---|---|---|---|---|---|---|"
  for set in throughput closed topics-10k; do
    f=$out/$set.csv
    p=$(m "$f" plain 0 msg_per_s) r=$(m "$f" relay 0 msg_per_s)
    n=$(m "$f" relay-nojournal 0 msg_per_s)
    label="1 topic, open (PUBACK window)"
    [[ $set == closed ]] && label="1 topic, closed loop (1,000 end to end)"
    [[ $set == topics-10k ]] && label="10,000 topics"
    if [[ -n "$n" && "$n" != 0 ]]; then
      printf '| %s | %.0f | %.0f | %.2f | %s | %.0f | %.2f |\n' "$label" "$p" "$r" "$(calc "$r/$p")" \
        "$(spread "$f" relay)" "$n" "$(calc "$n/$p")"
    else
      printf '| %s | %.0f | %.0f | %.2f | %s | - | - |\n' "$label" "$p" "$r" "$(calc "$r/$p")" "$(spread "$f" relay)"
    fi
  done
  ids=$(m "$out/closed.csv" relay-ids 0 msg_per_s) pc=$(m "$out/closed.csv" plain 0 msg_per_s)
  printf '\nClosed loop with a publisher msg-id on every message (relay-ids): %.0f msg/s, %.2f of plain.\n' \
    "$ids" "$(calc "$ids/$pc")"
  echo
  echo "| offered msg/s | plain p50 µs | relay p50 µs | added p50 µs | plain p99 µs | relay p99 µs | added p99 µs | relay without journal p50 / p99 µs |"
  echo "|---|---|---|---|---|---|---|---|"
  f=$out/latency.csv
  for rate in ${rates//,/ }; do
    pp50=$(m "$f" plain "$rate" p50_us) rp50=$(m "$f" relay "$rate" p50_us) np50=$(m "$f" relay-nojournal "$rate" p50_us)
    pp99=$(m "$f" plain "$rate" p99_us) rp99=$(m "$f" relay "$rate" p99_us) np99=$(m "$f" relay-nojournal "$rate" p99_us)
    printf '| %s | %.0f | %.0f | %+.0f | %.0f | %.0f | %+.0f | %.0f / %.0f |\n' "$rate" "$pp50" "$rp50" \
      "$(calc "$rp50-$pp50")" "$pp99" "$rp99" "$(calc "$rp99-$pp99")" "$np50" "$np99"
  done
  echo
  echo "CPU per message received (user + system, from /proc), medians: the relay against mosquitto's own in the plain"
  echo "path, and the plain path's forwarder (libmosquitto's receive and publish on its own threads, nothing else; no floor: the relay's own network loop takes less)."
  echo
  echo "| load | relay µs | its broker µs | MariaDB µs | plain: broker µs | forwarder µs | relay / plain broker |"
  echo "|---|---|---|---|---|---|---|"
  for set in throughput closed; do
    f=$out/$set.csv
    r=$(m "$f" relay 0 hop_cpu_us) rb=$(m "$f" relay 0 broker_cpu_us) rd=$(m "$f" relay 0 db_cpu_us)
    pb=$(m "$f" plain 0 broker_cpu_us) pf=$(m "$f" plain 0 hop_cpu_us)
    label="open (PUBACK window)"
    [[ $set == closed ]] && label="closed loop"
    printf '| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f |\n' "$label" "$r" "$rb" "$rd" "$pb" "$pf" "$(calc "$r/$pb")"
  done
  echo
  echo "What each process asked of the kernel per message received (medians): read and write calls (/proc/PID/io"
  echo "syscr + syscw: read(2), write(2) and their forms, as mosquitto and libmosquitto move MQTT; not recv(2) and"
  echo "send(2), which MariaDB's protocol uses, so its figure is mostly its redo log's writes) and context switches"
  echo "of its threads (voluntary and not; each voluntary one is a wake-up; a thread that ends takes its own along)."
  echo
  echo "| load | path | broker calls | hop calls | MariaDB calls | broker switches | hop switches | MariaDB switches |"
  echo "|---|---|---|---|---|---|---|---|"
  for set in throughput closed; do
    f=$out/$set.csv
    label="open (PUBACK window)"
    [[ $set == closed ]] && label="closed loop"
    for path in plain relay; do
      printf '| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n' "$label" "$path" \
        "$(m "$f" "$path" 0 broker_calls)" "$(m "$f" "$path" 0 hop_calls)" "$(m "$f" "$path" 0 db_calls)" \
        "$(m "$f" "$path" 0 broker_switches)" "$(m "$f" "$path" 0 hop_switches)" "$(m "$f" "$path" 0 db_switches)"
    done
  done
  echo
  echo "The relay's pipeline stages (its /metrics histograms over the first latency round; p50 and p99 are the"
  echo "bounds of the buckets they fall in, the mean is exact), in µs:"
  echo
  awk '
    /^  stages of [0-9]+ msg\/s relay 1\// { rate = $3; next }
    rate && /^    stage / { next }
    rate && /^    [a-z_]+ / { printf "| %s msg/s | %s | %s | %s / ≤%s / ≤%s |\n", rate, $1, $2, $3, $4, $5; next }
    { rate = "" }' "$out/latency.txt" | { echo "| load | stage | count | mean / p50 / p99 |"; echo "|---|---|---|---|"; cat; }
  echo
  sed -n '/^database floors/,$p' "$out/latency.txt" | sed 's/^/    /'
  echo
  f1=$out/throughput.csv f2=$out/topics-100k.csv
  rss1=$(col "$f1" relay 0 relay_rss_kb | tail -1) rss2=$(col "$f2" relay 0 relay_rss_kb | tail -1)
  printf 'Relay RSS: %.1f MiB after the 1-topic throughput runs, %.1f MiB after %s messages over 100,000 topics:\n' \
    "$(calc "$rss1/1024")" "$(calc "$rss2/1024")" "$big"
  printf '%.0f bytes per topic (the difference over 100,000).\n' "$(calc "($rss2-$rss1)*1024/100000")"
} > "$out/summary.md"

# ---- Plot: latency against offered load ---------------------------------------
f=$out/latency.csv
: > "$out/latency.dat"
for rate in ${rates//,/ }; do
  echo "$rate $(m "$f" plain "$rate" p50_us) $(m "$f" plain "$rate" p99_us) $(m "$f" relay "$rate" p50_us) $(m "$f" relay "$rate" p99_us)" \
    >> "$out/latency.dat"
done
gnuplot <<EOF
set terminal pngcairo size 900,560 font ",11"
set output "$out/latency.png"
set title "Publish-to-receive latency, 20-byte QoS 1 messages (medians of $rounds rounds)"
set xlabel "offered load, msg/s"
set ylabel "latency, µs"
set logscale xy
set grid
set key top left
plot "$out/latency.dat" using 1:2 with linespoints lw 2 title "plain p50", \
     "" using 1:3 with linespoints lw 2 dt 2 title "plain p99", \
     "" using 1:4 with linespoints lw 2 title "relay p50", \
     "" using 1:5 with linespoints lw 2 dt 2 title "relay p99"
EOF

if ((profile)); then
  report() { perf report -i "$out/relay.perf.data" -g none --stdio "$@" 2>/dev/null | grep '%' | grep -v '^#' | sed 's/[ -]*$//'; }
  {
    echo "The relay's profile during its first throughput run (perf report over $out/relay.perf.data)."
    echo
    echo "By library (--no-children --sort dso):"
    report --no-children --sort dso || true
    echo
    echo "Samples under the kernel's send, poll and read paths (--children --sort symbol; self in the second column):"
    report --children --sort symbol | grep -E '\] (tcp_sendmsg|do_sys_poll|vfs_read)$' || true
    echo
    echo "The top 20 (--no-children --sort dso,symbol):"
    report --no-children --sort dso,symbol | head -20 || true
  } > "$out/profile.txt"
  echo "== bench: the relay's profile ($out/profile.txt):"
  cat "$out/profile.txt"
fi

echo
cat "$out/summary.md"
echo
echo "== bench: done in $(( $(date +%s) - start )) s; plot: $out/latency.png; figures: $out/*.csv"
