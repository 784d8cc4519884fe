# Checks against the cluster stack (docker/compose.cluster.yaml with the
# docker/compose.cluster.test.yaml override: mosquitto, a 3-node MariaDB
# Galera cluster db1..db3, the relay given all three), by value. Sourced by
# tools/test-docker.sh after stack_checks.sh (wait_for, probe, metric,
# as_alice); provides dcc (docker-compose for this stack), say, die, $work,
# $cluster_project and the secrets of $work/env. Every wait polls against a
# deadline.
declare -A cids
cluster_services=(mosquitto db1 db2 db3 relay)
cluster_find_ids() { local s; for s in "${cluster_services[@]}"; do cids[$s]=$(dcc ps -q "$s"); done; }
cluster_health() { podman inspect --format '{{.State.Health.Status}}' "${cids[$1]}" 2>/dev/null; }
cluster_healthy() { local s; for s; do [[ $(cluster_health "$s") == healthy ]] || return 1; done; }
cluster_health_report() {
  local s
  for s in "${cluster_services[@]}"; do printf '%s: %s\n' "$s" "$(health_detail "${cids[$s]}")"; done
}
# SQL as root in a node's container, as an operator would. Reads wait until
# the node has applied everything the cluster committed before them
# (wsrep_sync_wait): Galera's reads are not causal otherwise.
node_sql() {  # node, SQL
  podman exec "${cids[$1]}" mariadb -uroot -p"$MYSQL_ROOT_PASSWORD" -N -B seqrelay \
    -e "SET SESSION wsrep_sync_wait = 1; $2"
}
# True when the node is in Galera's Primary component.
node_primary() {  # node
  [[ $(podman exec "${cids[$1]}" mariadb --connect-timeout=2 -uroot -p"$MYSQL_ROOT_PASSWORD" -N -B -e \
    "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'wsrep_cluster_status'" \
    2>/dev/null) == Primary ]]
}
# Galera's own failure, not the relay's: a survivor that stalls past
# evs.suspect_timeout when a node dies (a busy machine) splits from the
# other, and both stay non-Primary for good (docs/operations.md, "A Galera
# cluster for tests"). The waits after a kill watch for that: after 30 s in
# a row without a Primary survivor (counted across the waits), the first
# survivor that takes it is bootstrapped, once, as an operator would, the
# run says so, and the wait starts again.
cluster_bootstrapped="" no_primary_since="" last_primary_look=0
no_primary_for_30s() {  # survivors...: looked at once a second
  local now node
  now=$(date +%s)
  (( now > last_primary_look )) || return 1
  last_primary_look=$now
  for node; do node_primary "$node" && { no_primary_since=""; return 1; }; done
  [[ -n $no_primary_since ]] || no_primary_since=$now
  (( now - no_primary_since >= 30 ))
}
bootstrap_a_survivor() {  # survivors...
  local node
  say "note: Galera: no survivor Primary for 30 s (a split, not the relay's doing); bootstrapping one as an operator would"
  for node; do
    if podman exec "${cids[$node]}" mariadb --connect-timeout=2 -uroot -p"$MYSQL_ROOT_PASSWORD" \
      -e "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'"; then
      cluster_bootstrapped=$node
      say "note: $node bootstrapped"
      return 0
    fi
  done
  die "no survivor of $* could be bootstrapped"
}
wait_or_bootstrap() {  # seconds, description, survivors ("db2 db3"), command...
  local seconds=$1 what=$2 survivors=$3
  shift 3
  # The command, or a split not bootstrapped yet ($survivors: this call's).
  # shellcheck disable=SC2086
  ready_or_split() { "$@" || { [[ -z $cluster_bootstrapped ]] && no_primary_for_30s $survivors; }; }
  wait_for "$seconds" "$what" ready_or_split "$@"
  if ! "$@"; then
    # shellcheck disable=SC2086
    bootstrap_a_survivor $survivors
    wait_for "$seconds" "$what" "$@"
  fi
}
# The node the relay's writer uses, from /metrics: db1..db3, empty if none.
relay_node() { curl -sf "http://127.0.0.1:${METRICS_HOST_PORT:-9108}/metrics" | sed -n 's/^seqrelay_database_node{node="\(db[0-9]\):3306"} 1$/\1/p'; }
now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

# Started early (tools/test-docker.sh runs it beside the single-node stack's
# checks): the three nodes form the cluster, which takes most of this
# stack's time (two state transfers, each with mariadb-backup's 10 s pause).
cluster_db_start() {
  cluster_db_t0=$(now)
  dcc up -d --no-build db1 db2 db3 >"$work/cluster-db-up.log" 2>&1 &
  cluster_db_pid=$!
}

# One read of a node's whole MSG table (one podman exec; they are slow on
# a busy machine): its rows (R, topic, SEQ, payload) and a fingerprint of
# the table (F, rows, md5 over every column of every row in commit order).
snapshot() {  # nodes...
  local node
  for node; do
    node_sql "$node" "SELECT 'R', ID, SEQ, MSG FROM MSG;
      SET SESSION group_concat_max_len = 1 << 26;
      SELECT 'F', COUNT(*), MD5(GROUP_CONCAT(CONCAT_WS(',', idx, HEX(ID), QOS, SEQ, HEX(MSG), RECEIVED_AT, EPOCH)
                                             ORDER BY idx SEPARATOR ';')) FROM MSG" >"$work/snapshot-$node" ||
      die "reading MSG on $node failed"
  done
}

# Every acknowledged payload of the topic is in MSG on each node (as last
# read by snapshot), once, with SEQ 1..n, n = the number acknowledged (the
# probe publishes each payload once).
check_cluster_trail() {  # topic, acked file, nodes...
  local topic=$1 acked=$2 node missing n distinct first last want
  shift 2
  want=$(wc -l <"$acked")
  for node; do
    awk -F'\t' -v t="$topic" '$1 == "R" && $2 == t {print $4}' "$work/snapshot-$node" | sort -u >"$work/stored-$node"
    missing=$(comm -23 <(sort -u "$acked") "$work/stored-$node" | wc -l)
    ((missing == 0)) || die "$topic on $node: $missing acknowledged messages are not in MSG"
    read -r n distinct first last < <(awk -F'\t' -v t="$topic" '
      $1 == "R" && $2 == t { n++; if (!($4 in seen)) { seen[$4] = 1; k++ }
                             s = $3 + 0; if (n == 1 || s < lo) lo = s; if (s > hi) hi = s }
      END { print n + 0, k + 0, lo + 0, hi + 0 }' "$work/snapshot-$node")
    [[ $n == "$want" && $distinct == "$want" && $first == 1 && $last == "$want" ]] ||
      die "$topic on $node: $n rows, $distinct distinct, SEQ $first..$last; expected each of the $want acknowledged once, SEQ 1..$want"
  done
  say "$topic: $want acknowledged; on each of $* exactly those, once each, SEQ 1..$want"
}

# The whole MSG table is the same on every node given (as last read by
# snapshot): same rows, same values, same commit order (idx).
check_nodes_equal() {  # nodes...
  local node fp first_fp="" first_node=""
  for node; do
    fp=$(awk -F'\t' '$1 == "F" {print $2, $3}' "$work/snapshot-$node")
    [[ -n $fp ]] || die "no fingerprint of MSG from $node"
    if [[ -z $first_node ]]; then
      first_fp=$fp first_node=$node
    else
      [[ $fp == "$first_fp" ]] || die "MSG differs between $first_node ($first_fp) and $node ($fp)"
    fi
  done
  say "MSG identical on $* (rows, md5: $first_fp)"
}

load_topic() {  # topic, count, rate: a QoS 1 load that waits for every frame
  local out=$work/load-${1//\//_}
  probe load "${as_alice[@]}" --topic "$1" --count "$2" --rate "$3" --acked "$out.acked" --timeout 120 \
    >"$out" 2>"$out.err" || die "$1: load failed: $(cat "$out" "$out.err")"
  say "$1 load: $(cat "$out")"
}

run_cluster_checks() {
  local t_checks t
  t_checks=$(now)
  if [[ -z ${cluster_db_pid:-} ]]; then cluster_db_start; fi
  wait "$cluster_db_pid" || { cluster_db_pid=""; cat "$work/cluster-db-up.log" >&2; die "docker-compose up of db1..db3 failed"; }
  cluster_db_pid=""
  dcc up -d --no-build >"$work/cluster-up.log" 2>&1 || { cat "$work/cluster-up.log" >&2; die "docker-compose up (cluster) failed"; }
  cluster_find_ids
  why=cluster_health_report wait_for 180 "every service of the cluster stack healthy" cluster_healthy "${cluster_services[@]}"
  say "cluster stack up, all five services healthy ($(seconds_since "$cluster_db_t0") s after db1..db3 were started)"

  # The cluster as the compose file means it: db1 initialised and
  # bootstrapped; db2 and db3 did not initialise but got db1's data by
  # state transfer; three nodes Synced in one Primary component.
  local node log size state
  log=$(podman logs "${cids[db1]}" 2>&1)
  grep -q 'stand-in entrypoint: initialised' <<<"$log" || die "db1 did not initialise the database"
  server_args() { podman exec "${cids[$1]}" cat /proc/1/cmdline | tr '\0' ' '; }
  [[ $(server_args db1) == *" --wsrep-new-cluster"* ]] || die "db1 did not start the cluster: $(server_args db1)"
  for node in db2 db3; do
    [[ $(server_args "$node") != *"--wsrep-new-cluster"* ]] || die "$node started a cluster of its own: $(server_args "$node")"
    log=$(podman logs "${cids[$node]}" 2>&1)
    ! grep -q 'stand-in entrypoint: initialis' <<<"$log" || die "$node initialised a database of its own; a joiner must not"
    grep -q 'SST succeeded' <<<"$log" || die "$node did not receive a state transfer (SST)"
  done
  for node in db1 db2 db3; do
    read -r size state <<<"$(node_sql "$node" "SELECT
        (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'wsrep_cluster_size'),
        (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'wsrep_local_state_comment')")"
    [[ $size == 3 && $state == Synced ]] || die "$node: cluster size $size, state $state; expected 3, Synced"
  done
  [[ $(relay_node) == db1 ]] || die "the relay writes through '$(relay_node)', expected db1 (first of SEQRELAY_DB_HOST)"
  say "db1 initialised and bootstrapped; db2, db3 joined by SST without initialising; 3 nodes Synced; the relay on db1"

  # A QoS 1 load; every message on all three nodes.
  load_topic chat/cluster 300 150
  snapshot db1 db2 db3
  check_cluster_trail chat/cluster "$work/load-chat_cluster.acked" db1 db2 db3
  check_nodes_equal db1 db2 db3

  # SIGKILL of the node the relay writes to, under load.
  local topic=chat/failover out=$work/load-chat_failover victim t_kill stored committed0 committed moved_to t_move t_commit
  committed0=$(metric seqrelay_messages_committed_total)
  # Its last 100 wait for the kill (the probe's --hold-last), then go
  # unpaced: on a busy machine the load cannot end before the kill, and the
  # kill must come within its paced 14 s.
  local count=1500 hold=100
  probe load "${as_alice[@]}" --topic "$topic" --count "$count" --rate 100 --acked "$out.acked" \
    --hurry-file "$out.hurry" --hold-last "$hold" --timeout 120 >"$out" 2>"$out.err" &
  load_pid=$!
  committed_at_least() { (( $(metric seqrelay_messages_committed_total) >= $1 )); }
  wait_for 30 "the first 50 messages of $topic stored" committed_at_least $((committed0 + 50))
  victim=$(relay_node)
  [[ -n $victim ]] || die "no database node in /metrics"
  t_kill=$(now)
  podman kill "${cids[$victim]}" >/dev/null || die "podman kill $victim failed"
  # Nothing commits through a dead node: what the relay has counted by now
  # is about what was stored before the kill (for the figure, and to show
  # that the kill came mid-load).
  committed=$(metric seqrelay_messages_committed_total)
  stored=$((committed - committed0))
  touch "$out.hurry"
  (( stored < count - hold )) ||
    die "the kill came after the paced part of the load ($stored of $count stored): nothing was under way"
  relay_moved() { local n; n=$(relay_node); [[ -n $n && $n != "$victim" ]]; }
  local survivors=() node
  for node in db1 db2 db3; do [[ $node == "$victim" ]] || survivors+=("$node"); done
  wait_or_bootstrap 45 "the relay on another node after the kill of $victim" "${survivors[*]}" relay_moved
  t_move=$(seconds_since "$t_kill")
  moved_to=$(relay_node)
  committed_more() { (( $(metric seqrelay_messages_committed_total) > committed )); }
  wait_or_bootstrap 60 "a commit through $moved_to after the kill" "${survivors[*]}" committed_more
  t_commit=$(seconds_since "$t_kill")
  say "killed $victim (the relay's node) with $stored of $count stored; the relay was on $moved_to after $t_move s (/metrics), committed again after $t_commit s${cluster_bootstrapped:+ (after a bootstrap of $cluster_bootstrapped)}"
  cluster_failover_figures="relay on $moved_to ${t_move} s after the kill of $victim, first commit there after ${t_commit} s${cluster_bootstrapped:+ (after a bootstrap)}"
  wait "$load_pid" || { load_pid=""; die "$topic: load failed: $(cat "$out" "$out.err")"; }
  load_pid=""
  say "$topic load: $(cat "$out")"
  [[ $(podman inspect --format '{{.State.Status}}' "${cids[$victim]}") == exited ]] ||
    die "$victim is not down after the kill: $(podman inspect --format '{{.State.Status}}' "${cids[$victim]}")"
  local relay_log
  relay_log=$(podman logs "${cids[relay]}" 2>&1)
  grep -q "database: connected to $moved_to:3306 (node ${moved_to#db} of 3)" <<<"$relay_log" ||
    die "no 'database: connected to $moved_to:3306' in the relay's log"

  # More after the move; then nothing lost on the surviving nodes.
  load_topic chat/after 200 200
  snapshot "${survivors[@]}"
  check_cluster_trail chat/cluster "$work/load-chat_cluster.acked" "${survivors[@]}"
  check_cluster_trail "$topic" "$out.acked" "${survivors[@]}"
  check_cluster_trail chat/after "$work/load-chat_after.acked" "${survivors[@]}"
  check_nodes_equal "${survivors[@]}"
  podman exec "${cids[relay]}" seqaudit --db-host "$moved_to" --db-user seqrelay --db-password "$RELAY_DB_PASSWORD" \
    --db-name seqrelay --from-one >"$work/audit" || die "seqaudit on $moved_to: $(cat "$work/audit")"
  say "seqaudit on $moved_to: $(tail -1 "$work/audit" | tr -s ' ')"
  say "cluster checks passed in $(seconds_since "$t_checks") s; $cluster_failover_figures"
}
