#!/usr/bin/env bash
# Starts and stops a throwaway MariaDB Galera cluster on 127.0.0.1 (3 nodes
# by default), for tests and for trying the relay against a cluster by hand.
# Every node has its own data dir, socket, ports and option file under DIR;
# nothing outside DIR is read or written (no /etc/mysql, no system service)
# but the list of this machine's clusters' ports (/tmp/seqrelay-galera-ports).
# Usage: tools/galera.sh --help
set -euo pipefail

prog=$(basename "$0")

usage() {
  cat <<EOF
Usage: tools/$prog COMMAND DIR [ARGS] [OPTIONS]

A MariaDB Galera cluster on 127.0.0.1 for tests and local runs. The nodes
run in the background and outlive this script; stop them with '$prog stop DIR'.

Commands:
  start DIR [--nodes N] [--option NAME=VALUE]... [--owner PID]
        Creates DIR (it must not exist, or be empty) with a data dir per node
        (DIR/node1 .. DIR/nodeN), picks free ports on 127.0.0.1, writes each
        node's option file (DIR/nodeK.cnf), bootstraps node 1, waits until it
        is Synced, creates the user seqrelay (password test-password) for
        127.0.0.1 and localhost with all privileges, then starts the other
        nodes one by one and waits until every node is Synced and sees all N
        nodes. Writes DIR/cluster.env (see below). Installs the Debian
        packages it needs when they are missing.
  stop DIR [K]
        Stops every node of the cluster (or only node K) by the PIDs in
        DIR/cluster.env: SIGTERM, then SIGKILL after 30 s; one at a time, node
        1 last, so that 'restart DIR 1' then 'restart DIR 2' ... bring the
        cluster back with its data. Keeps DIR.
  kill DIR K
        SIGKILLs node K (a crash: the others notice it within a few seconds).
  restart DIR K
        Stops node K if it runs, starts it again and waits until it has
        rejoined the cluster (Synced, and sees every running node); a node
        that leaves the group after a failed join is started again, up to 3
        starts in all. When no
        other node runs, node K bootstraps a new cluster, but only if it was
        the last node to leave cleanly (safe_to_bootstrap in its grastate.dat).
  bootstrap DIR K
        After a loss of quorum (the nodes still running are non-Primary and
        refuse queries with error 1047), makes node K's component the Primary
        one (SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'). Pick the
        node with the latest data; nodes restarted after that join it.
  status DIR
        One line per node: pid and whether it runs, wsrep_cluster_size,
        wsrep_local_state_comment, wsrep_ready, wsrep_cluster_status. Exits 0
        when every node runs and is Synced, 1 otherwise.
  sql DIR K [SQL]
        Runs SQL on node K as root over its socket (no SQL: the interactive
        client).

Options:
  --nodes N             start: number of nodes, 1 to 9 (default 3)
  --option NAME=VALUE   start: one more [mysqld] setting for every node's
                        option file (repeatable), e.g. --option wsrep_sync_wait=1
  --owner PID           start: the cluster belongs to process PID (a test run):
                        a watchdog stops it once PID is gone, however it ended
                        (a Ctrl-C, a crash); it is done with once DIR is gone
                        and no node runs (DIR/watchdog.log says what it did)
  --timeout SECONDS     start, restart, bootstrap: bound of each wait for a node
                        (default 120; env GALERA_TIMEOUT)
  -h, --help            this text

DIR/cluster.env has KEY=VALUE lines, readable by 'source' or line by line:
  NODES=N, DB_HOSTS=127.0.0.1:P1,127.0.0.1:P2,..., DB_USER, DB_PASSWORD, and
  per node K: NODEK_PORT (SQL), NODEK_SOCKET, NODEK_PID, NODEK_GALERA_PORT,
  NODEK_IST_PORT, NODEK_SST_PORT, NODEK_CNF, NODEK_LOG (error log).

Settings of every node: wsrep_sst_method=mariabackup (as root via the node's
socket, wsrep_sst_auth=root:; rsync SST fails as root), binlog_format=ROW, InnoDB,
innodb_autoinc_lock_mode=2, a 64M buffer pool, skip-name-resolve, and
Galera's own failure detection (evs.suspect_timeout 5 s, inactive_timeout
15 s): the others drop a killed node after about 6 s. Shorter timeouts split
the cluster when a node stalls for a few seconds on a busy machine.

Examples:
  tools/$prog start /tmp/galera
  source /tmp/galera/cluster.env; echo "\$DB_HOSTS"
  tools/$prog kill /tmp/galera 1; tools/$prog status /tmp/galera
  tools/$prog restart /tmp/galera 1
  tools/$prog stop /tmp/galera && rm -rf /tmp/galera
EOF
}

die() {
  echo "$prog: $*" >&2
  exit 1
}
usage_error() {
  echo "$prog: $*" >&2
  echo "Try 'tools/$prog --help'." >&2
  exit 2
}
log() { echo "$prog: $*" >&2; }

readonly provider=/usr/lib/galera/libgalera_smm.so
readonly db_user=seqrelay db_password=test-password
timeout=${GALERA_TIMEOUT:-120}

find_binary() {
  local d
  for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
    if [[ -x $d/$1 ]]; then
      echo "$d/$1"
      return 0
    fi
  done
  die "$1 not found (tools/$prog start installs it)"
}

# Installs the packages a cluster needs, in the way of tools/deps.sh.
ensure_packages() {
  local wanted=(mariadb-server mariadb-client mariadb-backup galera-4 socat rsync iproute2 lsof procps) missing=() p
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} > 0)); then
    log "installing ${missing[*]}"
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo dpkg --configure -a >/dev/null 2>&1 || true  # an install stopped half way
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [[ -e $provider ]] || die "$provider is missing: is galera-4 installed? (dpkg -L galera-4)"
}

# ---- DIR/cluster.env -------------------------------------------------------

declare -A cfg=()
dir=""

set_dir() {
  local d=$1
  [[ -n $d ]] || usage_error "DIR is missing"
  [[ $d =~ ^[A-Za-z0-9._/+-]+$ ]] || die "DIR '$d': use only letters, digits and . _ / + - in its path"
  dir=$d
}

load_env() {
  local file=$dir/cluster.env line
  [[ -d $dir ]] || die "$dir: no such directory"
  [[ -r $file ]] || die "$file not found: was the cluster started with '$prog start $dir'?"
  dir=$(cd "$dir" && pwd)
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^([A-Z0-9_]+)=([^[:space:]]*)$ ]] || continue
    cfg[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
  done <"$file"
  [[ ${cfg[NODES]:-} =~ ^[1-9]$ ]] || die "$file: no valid NODES line"
  # the path the nodes were started with: their command lines name it
  [[ -n ${cfg[DIR]:-} ]] && dir=${cfg[DIR]}
}

write_env() {
  local n hosts="" tmp=$dir/cluster.env.tmp
  {
    echo "# written by tools/$prog: the cluster in $dir"
    echo "DIR=$dir"
    echo "NODES=${cfg[NODES]}"
    for ((n = 1; n <= cfg[NODES]; n++)); do
      local k
      for k in PORT SOCKET PID GALERA_PORT IST_PORT SST_PORT CNF LOG; do
        echo "NODE${n}_$k=${cfg[NODE${n}_$k]:-}"
      done
      hosts+="${hosts:+,}127.0.0.1:${cfg[NODE${n}_PORT]}"
    done
    echo "DB_HOSTS=$hosts"
    echo "DB_USER=$db_user"
    echo "DB_PASSWORD=$db_password"
  } >"$tmp"
  mv -f "$tmp" "$dir/cluster.env"
}

check_node_arg() {
  [[ ${1:-} =~ ^[1-9]$ ]] || usage_error "node number '${1:-}': expected 1 to ${cfg[NODES]}"
  ((${1} <= cfg[NODES])) || usage_error "node $1: the cluster in $dir has ${cfg[NODES]} nodes"
}

# ---- processes -------------------------------------------------------------

# True when PID is a live (not zombie) mariadbd of node N of this cluster:
# a PID that was reused by another process is never signalled.
pid_is_node() {
  local pid=$1 n=$2 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "--defaults-file=$dir/node$n.cnf"
}

node_alive() { pid_is_node "${cfg[NODE${1}_PID]:-}" "$1"; }

log_tail() {
  local n=$1
  echo "---- node $n: tail of ${cfg[NODE${n}_LOG]} ----" >&2
  tail -n "${2:-40}" "${cfg[NODE${n}_LOG]}" >&2 2>/dev/null || true
  echo "----" >&2
}

# Stops node N: SIGTERM, up to 30 s, then SIGKILL.
stop_node() {
  local n=$1 pid deadline
  node_alive "$n" || return 0
  pid=${cfg[NODE${n}_PID]}
  log "stopping node $n (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 30))
  while node_alive "$n"; do
    if ((SECONDS >= deadline)); then
      log "node $n (pid $pid) did not stop within 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while node_alive "$n"; do
        ((SECONDS < deadline)) || die "node $n (pid $pid) still runs 10 s after SIGKILL"
        sleep 0.2
      done
      return 0
    fi
    sleep 0.2
  done
}

# Stops the given nodes one at a time, the last one given first: each leaves
# a cluster that sees it go, and the first one given, leaving last, is marked
# safe_to_bootstrap (so that 'restart DIR 1' can bring a stopped cluster back).
stop_nodes() {
  local i args=("$@")
  for ((i = ${#args[@]} - 1; i >= 0; i--)); do
    stop_node "${args[i]}"
  done
}

sql() {
  local n=$1
  shift
  "$mariadb" --no-defaults --connect-timeout=2 -S "${cfg[NODE${n}_SOCKET]}" -uroot -N -B -e "$*"
}

# Prints "size state ready status" of node N ("- - - -" when it does not answer).
wsrep_state() {
  local out size=- state=- ready=- status=- name value
  out=$(sql "$1" "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_size','wsrep_local_state_comment','wsrep_ready','wsrep_cluster_status')" 2>/dev/null) || out=""
  while IFS=$'\t' read -r name value; do
    case ${name,,} in
      wsrep_cluster_size) size=$value ;;
      wsrep_local_state_comment) state=${value// /_} ;;
      wsrep_ready) ready=$value ;;
      wsrep_cluster_status) status=${value// /_} ;;
    esac
  done <<<"$out"
  echo "${size:--} ${state:--} ${ready:--} ${status:--}"
}

# Waits until node N is Synced and ready and sees WANT nodes. With a third
# argument 1, gives up early when no other running node is in the Primary
# component for 20 s in a row: a joiner cannot get in until quorum is back;
# and returns 3 when node N has been Disconnected for 5 s while another node
# is Primary: it left the group after a failed join ("Sending JOIN failed"
# after its state transfer, seen on a loaded machine) and stays out until it
# is started again.
wait_synced() {
  local n=$1 want=$2 check_quorum=${3:-0} deadline=$((SECONDS + timeout)) size state ready status
  local no_primary_since="" disconnected_since=""
  while :; do
    if ! node_alive "$n"; then
      log_tail "$n"
      die "node $n exited while starting (log: ${cfg[NODE${n}_LOG]})"
    fi
    read -r size state ready status < <(wsrep_state "$n")
    if [[ $state == Synced && $ready == ON && $size == "$want" ]]; then
      return 0
    fi
    if ((check_quorum)) && [[ $status == Disconnected ]] && primary_alive "$n"; then
      if [[ -z $disconnected_since ]]; then
        disconnected_since=$SECONDS
      elif ((SECONDS - disconnected_since >= 5)); then
        log_tail "$n" 15
        log "node $n is out of the group (state $state, status $status) while another node is Primary"
        return 3
      fi
    else
      disconnected_since=""
    fi
    if ((check_quorum)) && [[ $status != Primary ]]; then
      if primary_alive "$n"; then
        no_primary_since=""
      elif [[ -z $no_primary_since ]]; then
        no_primary_since=$SECONDS
      elif ((SECONDS - no_primary_since >= 20)); then
        log_tail "$n" 15
        die "node $n cannot join: no running node has been in the Primary component for 20 s (quorum lost). Run '$prog bootstrap $dir K' on the running node K with the latest data: node $n, left running, then joins by itself"
      fi
    fi
    if ((SECONDS >= deadline)); then
      log_tail "$n"
      die "node $n: not Synced with cluster size $want within ${timeout} s (now: size $size, state $state, ready $ready, status $status)"
    fi
    sleep 0.5
  done
}

# After a crash grastate.dat has seqno -1: the node would not know its
# position and would ask for a full state transfer. As mysqld_safe does, a
# --wsrep-recover run reads the position from InnoDB first; with it the node
# asks for an incremental transfer (IST) of what it missed.
recover_position() {
  local n=$1 out=$dir/node$1.recover.log pos
  grep -qE '^seqno:[[:space:]]*-1' "$dir/node$n/grastate.dat" 2>/dev/null || return 0
  [[ -e $dir/node$n/ibdata1 ]] || return 0
  log "node $n stopped uncleanly: recovering its position (log: $out)"
  if ! timeout "$timeout" "$mariadbd" --defaults-file="$dir/node$n.cnf" --wsrep-recover --disable-log-error \
    --pid-file="$dir/node$n.recover.pid" >"$out" 2>&1; then
    tail -n 30 "$out" >&2
    die "node $n: position recovery (--wsrep-recover) failed (log: $out)"
  fi
  pos=$(grep -a 'WSREP: Recovered position:' "$out" | tail -n 1 | sed 's/.*Recovered position:[[:space:]]*//')
  if [[ $pos =~ ^[0-9a-f-]{36}:[0-9]+ ]]; then
    start_position=$pos
    log "node $n: recovered position $pos"
  else
    log "node $n: no position recovered: it will get a full state transfer"
  fi
}

launch_node() {
  local n=$1 bootstrap=$2 args=() start_position=""
  args=(--defaults-file="$dir/node$n.cnf")
  ((bootstrap)) && args+=(--wsrep-new-cluster)
  recover_position "$n"
  [[ -n $start_position ]] && args+=(--wsrep-start-position="$start_position")
  local what="starting node $n"
  ((bootstrap)) && what+=" (bootstrapping a new cluster)"
  echo "==== $(date '+%F %T') $prog: $what ====" >>"${cfg[NODE${n}_LOG]}"
  # setsid: the node outlives this script and a Ctrl-C typed at it.
  setsid "$mariadbd" "${args[@]}" >>"${cfg[NODE${n}_LOG]}" 2>&1 </dev/null &
  cfg[NODE${n}_PID]=$!
  write_env
  local deadline=$((SECONDS + 5))
  until node_alive "$n"; do
    if ((SECONDS >= deadline)); then
      log_tail "$n"
      die "node $n (pid ${cfg[NODE${n}_PID]}) did not start"
    fi
    sleep 0.1
  done
}

# True when a live node other than N is in the Primary component.
primary_alive() {
  local n=$1 k size state ready status
  for ((k = 1; k <= cfg[NODES]; k++)); do
    if ((k == n)) || ! node_alive "$k"; then continue; fi
    read -r size state ready status < <(wsrep_state "$k")
    [[ $status == Primary ]] && return 0
  done
  return 1
}

# Waits (up to 30 s) until no running node other than N still counts N's
# previous, killed instance in its cluster size. A node started before that
# forms a view of its own and needs about 10 s more to get in.
wait_evicted() {
  local n=$1 others=$2 k size state ready status deadline=$((SECONDS + 30)) waiting
  while :; do
    waiting=0
    for ((k = 1; k <= cfg[NODES]; k++)); do
      if ((k == n)) || ! node_alive "$k"; then continue; fi
      read -r size state ready status < <(wsrep_state "$k")
      [[ $size =~ ^[0-9]+$ ]] && ((size > others)) && waiting=1
    done
    ((waiting)) || return 0
    if ((SECONDS >= deadline)); then
      log "the other nodes still count node $n after 30 s: starting it anyway"
      return 0
    fi
    sleep 0.2
  done
}

# Number of live nodes other than N.
others_alive() {
  local n=$1 k count=0
  for ((k = 1; k <= cfg[NODES]; k++)); do
    ((k != n)) && node_alive "$k" && count=$((count + 1))
  done
  echo "$count"
}

# ---- ports -----------------------------------------------------------------

declare -A taken_ports=()

# Sets variable $1 to a TCP port that no socket on this machine uses, below
# the ephemeral range (so that no outgoing connection takes it before the
# node binds it), and not given out before by this run.
free_port() {
  local lo=20000 hi eph p i
  read -r eph _ </proc/sys/net/ipv4/ip_local_port_range
  hi=$((eph - 1))
  ((hi > lo + 1000)) || lo=1024
  for ((i = 0; i < 1000; i++)); do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    [[ -z ${taken_ports[$p]:-} && -z ${used_ports[$p]:-} ]] || continue
    taken_ports[$p]=1
    printf -v "$1" '%s' "$p"
    return 0
  done
  die "no free TCP port found between $lo and $hi"
}

declare -A used_ports=()
load_used_ports() {
  local addr file owner p ports_of=()
  while read -r addr; do
    used_ports[${addr##*:}]=1
  done < <(ss -Htan | awk '{print $4}')
  # The ports other clusters of this machine picked: a node's IST and SST
  # ports are bound only during a state transfer, so ss does not show them,
  # and two clusters started side by side (the Galera test shards) could
  # pick the same one. A list whose cluster folder is gone is stale.
  for file in "$ports_dir"/*.ports; do
    [[ -f $file ]] || continue
    { read -r owner && read -r -a ports_of; } <"$file" || continue
    if [[ ! -d $owner ]]; then
      rm -f "$file"
      continue
    fi
    for p in "${ports_of[@]}"; do used_ports[$p]=1; done
  done
}

# This machine's clusters' ports, a file per cluster (its folder, then its
# ports), written under an exclusive lock held from load_used_ports on, so
# that clusters started at once pick apart.
ports_dir=/tmp/seqrelay-galera-ports  # one list for every caller, whatever its TMPDIR
lock_ports() {
  mkdir -p "$ports_dir"
  exec 8>"$ports_dir/lock"
  flock -w 60 8 || die "no lock on $ports_dir/lock within 60 s"
}
record_ports() {  # the ports picked by this run, then the lock goes
  local file
  file=$ports_dir/$(printf '%s' "$dir" | md5sum | cut -c1-16).ports
  { echo "$dir"; echo "${!taken_ports[*]}"; } >"$file.tmp" && mv "$file.tmp" "$file"
  exec 8>&-
}

# ---- commands --------------------------------------------------------------

write_cnf() {
  local n=$1 cluster_address=$2 opt
  {
    echo "# node $n of the Galera cluster in $dir, written by tools/$prog"
    echo "[mysqld]"
    [[ $(id -u) -eq 0 ]] && echo "user=root"
    echo "datadir=$dir/node$n"
    echo "tmpdir=$dir/tmp$n"
    echo "socket=${cfg[NODE${n}_SOCKET]}"
    echo "pid-file=$dir/node$n.pid"
    echo "log-error=${cfg[NODE${n}_LOG]}"
    echo "port=${cfg[NODE${n}_PORT]}"
    echo "bind-address=127.0.0.1"
    echo "skip-name-resolve"
    echo "default_storage_engine=InnoDB"
    echo "binlog_format=ROW"
    echo "innodb_autoinc_lock_mode=2"
    echo "innodb_flush_log_at_trx_commit=1"
    echo "# small: several nodes share one small machine"
    echo "innodb_buffer_pool_size=64M"
    echo "innodb_log_file_size=32M"
    echo "innodb_log_buffer_size=8M"
    echo "key_buffer_size=8M"
    echo "aria_pagecache_buffer_size=16M"
    echo "performance_schema=OFF"
    echo "wsrep_on=ON"
    echo "wsrep_provider=$provider"
    echo "wsrep_cluster_name=seqrelay"
    echo "wsrep_cluster_address=$cluster_address"
    echo "wsrep_node_name=node$n"
    echo "wsrep_node_address=127.0.0.1:${cfg[NODE${n}_GALERA_PORT]}"
    echo "wsrep_node_incoming_address=127.0.0.1:${cfg[NODE${n}_PORT]}"
    # mariabackup, not rsync: the rsync daemon that wsrep_sst_rsync starts
    # drops to 'nobody' when run as root, and cannot write the data dir.
    echo "wsrep_sst_method=mariabackup"
    echo "wsrep_sst_auth=root:"
    echo "wsrep_sst_receive_address=127.0.0.1:${cfg[NODE${n}_SST_PORT]}"
    echo "wsrep_provider_options=\"gmcast.listen_addr=tcp://127.0.0.1:${cfg[NODE${n}_GALERA_PORT]};ist.recv_addr=127.0.0.1:${cfg[NODE${n}_IST_PORT]};gcache.size=64M\""
    for opt in "${extra_options[@]}"; do echo "$opt"; done
    echo "[sst]"
    echo "# keep the SST logs in the data dir, not in /tmp/sst_log_archive"
    echo "sst-log-archive=0"
  } >"$dir/node$n.cnf"
}

cmd_start() {
  local nodes=$1 n
  [[ $nodes =~ ^[1-9]$ ]] || usage_error "--nodes '$nodes': expected 1 to 9"
  if [[ -e $dir && ! -d $dir ]]; then die "$dir exists and is not a directory"; fi
  if [[ -d $dir && -n $(ls -A "$dir") ]]; then
    die "$dir is not empty: give a new directory (a cluster there? '$prog stop $dir', then remove it)"
  fi
  ensure_packages
  mariadbd=$(find_binary mariadbd)
  mariadb=$(find_binary mariadb)
  local install_db
  install_db=$(find_binary mariadb-install-db)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  set_dir "$dir"
  # a Unix socket path must stay under 108 bytes
  ((${#dir} + 12 < 108)) || die "DIR '$dir' is too long for the nodes' socket paths"

  local t0=$SECONDS
  lock_ports
  load_used_ports
  cfg[NODES]=$nodes
  local cluster_address="" port
  for ((n = 1; n <= nodes; n++)); do
    for port in PORT GALERA_PORT IST_PORT SST_PORT; do
      free_port "cfg[NODE${n}_$port]"
    done
    cfg[NODE${n}_SOCKET]=$dir/node$n.sock
    cfg[NODE${n}_CNF]=$dir/node$n.cnf
    cfg[NODE${n}_LOG]=$dir/node$n.err
    cfg[NODE${n}_PID]=""
    cluster_address+="${cluster_address:+,}127.0.0.1:${cfg[NODE${n}_GALERA_PORT]}"
  done
  record_ports
  cluster_address="gcomm://$cluster_address"

  for ((n = 1; n <= nodes; n++)); do
    mkdir -p "$dir/node$n" "$dir/tmp$n"
    write_cnf "$n" "$cluster_address"
  done
  write_env
  # Before the first node: an owner gone while this start still runs (a
  # Ctrl-C kills this script too) must not leave nodes behind either.
  [[ -z $owner ]] || start_watchdog "$owner"

  # System tables for node 1; the others get copies of its data dir.
  if ! "$install_db" --no-defaults "--user=$(id -un)" "--datadir=$dir/node1" "--tmpdir=$dir/tmp1" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1; then
    cat "$dir/install.log" >&2
    die "mariadb-install-db failed (log: $dir/install.log)"
  fi

  # From here on, a failure stops the nodes started so far.
  trap 'log "start failed: stopping the nodes started so far (DIR kept for a look)"; stop_nodes $(seq 1 "${cfg[NODES]}") || true' EXIT
  launch_node 1 1
  wait_synced 1 1
  sql 1 "CREATE USER '$db_user'@'127.0.0.1' IDENTIFIED BY '$db_password';
         GRANT ALL PRIVILEGES ON *.* TO '$db_user'@'127.0.0.1';
         CREATE USER '$db_user'@'localhost' IDENTIFIED BY '$db_password';
         GRANT ALL PRIVILEGES ON *.* TO '$db_user'@'localhost';" ||
    die "creating the user $db_user on node 1 failed"
  log "node 1 bootstrapped, user $db_user created ($((SECONDS - t0)) s)"
  if ((nodes > 1)); then
    # A joiner with an empty data dir needs a state transfer (SST), and
    # wsrep_sst_mariabackup sleeps 10 s in each. Instead node 1 stops cleanly
    # and the others start from copies of its data dir: the same cluster
    # UUID and seqno (grastate.dat), so that they join with no transfer.
    stop_nodes 1
    grep -qE '^seqno:[[:space:]]*[0-9]+' "$dir/node1/grastate.dat" ||
      die "node 1 did not record its position at shutdown: $(cat "$dir/node1/grastate.dat" 2>&1)"
    for ((n = 2; n <= nodes; n++)); do
      cp -a "$dir/node1/." "$dir/node$n/"
      rm -f "$dir/node$n/galera.cache" "$dir/node$n/gvwstate.dat"
      sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 0/' "$dir/node$n/grastate.dat"
    done
    launch_node 1 1
    wait_synced 1 1
    log "node 1 bootstrapped again ($((SECONDS - t0)) s), port ${cfg[NODE1_PORT]}"
  fi
  for ((n = 2; n <= nodes; n++)); do
    launch_node "$n" 0
    wait_synced "$n" "$n"
    log "node $n joined and Synced ($((SECONDS - t0)) s), port ${cfg[NODE${n}_PORT]}"
  done
  for ((n = 1; n <= nodes; n++)); do
    wait_synced "$n" "$nodes"
    "$mariadb" --no-defaults --connect-timeout=5 -h 127.0.0.1 -P "${cfg[NODE${n}_PORT]}" -u "$db_user" \
      "-p$db_password" -N -B -e 'SELECT 1' >/dev/null || die "node $n: $db_user cannot log in over TCP"
  done
  trap - EXIT
  log "cluster of $nodes node(s) up in $((SECONDS - t0)) s; settings in $dir/cluster.env"
  grep -E '^(DB_HOSTS|NODE[0-9]_(PORT|PID))=' "$dir/cluster.env"
}

# Stops the cluster once process $1 is gone: its owner, a test run, which a
# Ctrl-C or a crash may end without a stop (and whose signal cleanup may
# remove DIR first). Runs as 'galera.sh __watch DIR PID START' in a session
# of its own (START: the owner's start time, so that a PID taken by another
# process later is not the owner); keeps the nodes' PIDs as DIR/cluster.env
# last said them (a node restarted gets a new one), and stops only live
# mariadbd of this cluster (pid_is_node: by their command lines, which name
# DIR whether or not it is still there), until a pass finds none. Done with
# once DIR is gone and no node runs.
start_watchdog() {
  local self
  self=$(cd "$(dirname "$0")" && pwd)/$prog
  setsid "$self" __watch "$dir" "$1" "$(start_time "$1")" </dev/null >>"$dir/watchdog.log" 2>&1 &
  log "watchdog: the cluster stops once process $1 is gone"
}

# A process's start time (clock ticks after boot), empty once it is gone or
# a zombie.
start_time() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  read -r -a fields <<<"$stat"
  if [[ ${fields[0]} != Z ]]; then echo "${fields[19]}"; fi
}

cmd_watch() {
  local owner=$1 started=$2 n line alive
  read_pids() {
    [[ -r $dir/cluster.env ]] || return 0
    while IFS= read -r line; do
      if [[ $line =~ ^(NODES|NODE[1-9]_PID)=([0-9]*)$ ]]; then cfg[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}; fi
    done <"$dir/cluster.env" || true
  }
  count_alive() {
    alive=0
    for ((n = 1; n <= ${cfg[NODES]:-0}; n++)); do
      if node_alive "$n"; then alive=$((alive + 1)); fi
    done
  }
  while :; do
    read_pids
    count_alive
    if [[ -z $started || $(start_time "$owner") != "$started" ]]; then
      local pass
      for ((pass = 1; pass <= 3 && alive > 0; pass++)); do
        log "watchdog: owner $owner gone: stopping the cluster's $alive running node(s)"
        for ((n = cfg[NODES]; n >= 1; n--)); do (stop_node "$n") || true; done
        read_pids
        count_alive
      done
      exit 0
    fi
    if [[ ! -e $dir ]] && ((alive == 0)); then exit 0; fi
    sleep 1
  done
}

cmd_stop() {
  local n nodes=()
  if [[ -n ${1:-} ]]; then
    check_node_arg "$1"
    nodes=("$1")
  else
    for ((n = 1; n <= cfg[NODES]; n++)); do nodes+=("$n"); done
  fi
  stop_nodes "${nodes[@]}"
  log "stopped node(s) ${nodes[*]}"
}

cmd_kill() {
  local n=$1 pid deadline
  check_node_arg "$n"
  node_alive "$n" || die "node $n does not run (pid ${cfg[NODE${n}_PID]:-none})"
  pid=${cfg[NODE${n}_PID]}
  kill -KILL "$pid"
  deadline=$((SECONDS + 10))
  while node_alive "$n"; do
    ((SECONDS < deadline)) || die "node $n (pid $pid) still runs 10 s after SIGKILL"
    sleep 0.1
  done
  log "killed node $n (pid $pid)"
}

cmd_restart() {
  local n=$1 others bootstrap=0
  check_node_arg "$n"
  mariadbd=$(find_binary mariadbd)
  mariadb=$(find_binary mariadb)
  node_alive "$n" && stop_nodes "$n"
  others=$(others_alive "$n")
  if ((others == 0 && cfg[NODES] > 1)); then
    if grep -qE '^safe_to_bootstrap:[[:space:]]*1' "$dir/node$n/grastate.dat" 2>/dev/null; then
      log "no other node runs: node $n left last and bootstraps a new cluster"
      bootstrap=1
    else
      local k last=""
      for ((k = 1; k <= cfg[NODES]; k++)); do
        grep -qE '^safe_to_bootstrap:[[:space:]]*1' "$dir/node$k/grastate.dat" 2>/dev/null && last=$k
      done
      if [[ -n $last ]]; then
        die "no other node runs, and node $last, not node $n, left last: first '$prog restart $dir $last'"
      fi
      die "no other node runs and none left last cleanly (safe_to_bootstrap: 0 in every DIR/nodeK/grastate.dat, as after a crash): set 'safe_to_bootstrap: 1' in the grastate.dat of the node with the highest seqno, restart that node first; or start a new cluster"
    fi
  elif ((cfg[NODES] == 1)); then
    bootstrap=1
  fi
  local t0=$SECONDS
  # shellcheck disable=SC2064 # the values now, not at exit
  trap "node_alive $n && log \"node $n is left running: '$prog stop $dir $n' stops it\"" EXIT
  local attempt rc
  for ((attempt = 1; ; attempt++)); do
    if ((others > 0)); then wait_evicted "$n" "$others"; fi
    launch_node "$n" "$bootstrap"
    rc=0
    wait_synced "$n" $((others + 1)) 1 || rc=$?
    ((rc == 0)) && break
    ((attempt < 3)) || die "node $n did not get into the group in $attempt starts (log: ${cfg[NODE${n}_LOG]})"
    log "node $n: stopping it and starting it again (start $((attempt + 1)) of 3)"
    stop_nodes "$n"
  done
  trap - EXIT
  if ((bootstrap)); then
    log "node $n (pid ${cfg[NODE${n}_PID]}) bootstrapped the cluster again: Synced, in $((SECONDS - t0)) s"
  else
    log "node $n (pid ${cfg[NODE${n}_PID]}) rejoined: Synced, cluster size $((others + 1)), in $((SECONDS - t0)) s"
  fi
}

cmd_bootstrap() {
  local n=$1 size state ready status
  check_node_arg "$n"
  mariadb=$(find_binary mariadb)
  node_alive "$n" || die "node $n does not run"
  read -r size state ready status < <(wsrep_state "$n")
  [[ $status != Primary ]] || die "node $n is in the Primary component already (cluster size $size)"
  sql "$n" "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'" || die "node $n: pc.bootstrap failed"
  local deadline=$((SECONDS + timeout))
  while :; do
    read -r size state ready status < <(wsrep_state "$n")
    [[ $status == Primary && $ready == ON ]] && break
    ((SECONDS < deadline)) || die "node $n: not Primary within $timeout s (status $status, ready $ready)"
    sleep 0.2
  done
  log "node $n is Primary again: cluster size $size, state $state"
}

cmd_status() {
  local n size state ready status all_ok=0
  mariadb=$(find_binary mariadb)
  printf '%-5s %-8s %-8s %-6s %-5s %-12s %-6s %s\n' node pid running port size state ready status
  for ((n = 1; n <= cfg[NODES]; n++)); do
    if node_alive "$n"; then
      read -r size state ready status < <(wsrep_state "$n")
      printf '%-5s %-8s %-8s %-6s %-5s %-12s %-6s %s\n' "$n" "${cfg[NODE${n}_PID]}" yes "${cfg[NODE${n}_PORT]}" \
        "$size" "$state" "$ready" "$status"
      [[ $state == Synced ]] || all_ok=1
    else
      printf '%-5s %-8s %-8s %-6s %-5s %-12s %-6s %s\n' "$n" "${cfg[NODE${n}_PID]:--}" no "${cfg[NODE${n}_PORT]}" - - - -
      all_ok=1
    fi
  done
  return "$all_ok"
}

cmd_sql() {
  local n=$1
  shift
  check_node_arg "$n"
  node_alive "$n" || die "node $n does not run"
  mariadb=$(find_binary mariadb)
  if (($# == 0)); then
    exec "$mariadb" --no-defaults -S "${cfg[NODE${n}_SOCKET]}" -uroot
  fi
  exec "$mariadb" --no-defaults -S "${cfg[NODE${n}_SOCKET]}" -uroot -e "$*"
}

# ---- arguments -------------------------------------------------------------

(($# > 0)) || usage_error "a COMMAND is missing"
case $1 in
  -h | --help | help)
    usage
    exit 0
    ;;
esac
command=$1
shift

if [[ $command == sql ]]; then
  (($# >= 2)) || usage_error "usage: $prog sql DIR K [SQL]"
  set_dir "$1"
  load_env
  shift
  cmd_sql "$@"
fi

node_count=3
owner=""
nodes_given=0
options_given=0
extra_options=()
positional=()
while (($# > 0)); do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --nodes | --option | --timeout | --owner)
      (($# >= 2)) || usage_error "$1 needs a value"
      case $1 in
        --nodes) node_count=$2 nodes_given=1 ;;
        --option) extra_options+=("$2") options_given=1 ;;
        --timeout) timeout=$2 ;;
        --owner) owner=$2 options_given=1 ;;
      esac
      shift 2
      ;;
    --nodes=*) node_count=${1#*=} nodes_given=1 && shift ;;
    --option=*) extra_options+=("${1#*=}") options_given=1 && shift ;;
    --timeout=*) timeout=${1#*=} && shift ;;
    --owner=*) owner=${1#*=} options_given=1 && shift ;;
    --)
      shift
      positional+=("$@")
      break
      ;;
    -*) usage_error "unknown option '$1'" ;;
    *)
      positional+=("$1")
      shift
      ;;
  esac
done
[[ $timeout =~ ^[1-9][0-9]*$ ]] || usage_error "--timeout '$timeout': expected a number of seconds"
for opt in "${extra_options[@]}"; do
  [[ $opt =~ ^[A-Za-z][A-Za-z0-9_-]*(=[^[:cntrl:]]*)?$ ]] || usage_error "--option '$opt': expected NAME=VALUE"
done
if [[ $command != start ]] && ((nodes_given || options_given)); then
  usage_error "--nodes, --option and --owner go with 'start' only"
fi
if [[ -n $owner ]] && ! { [[ $owner =~ ^[1-9][0-9]*$ ]] && kill -0 "$owner" 2>/dev/null; }; then
  usage_error "--owner '$owner': expected the PID of a running process"
fi

case $command in
  __watch)
    ((${#positional[@]} == 3)) || usage_error "usage: $prog __watch DIR PID START (internal: start --owner)"
    dir=${positional[0]}
    cmd_watch "${positional[1]}" "${positional[2]}"
    ;;
  start)
    ((${#positional[@]} == 1)) || usage_error "usage: $prog start DIR [--nodes N] [--option NAME=VALUE]... [--owner PID]"
    set_dir "${positional[0]}"
    cmd_start "$node_count"
    ;;
  stop)
    ((${#positional[@]} == 1 || ${#positional[@]} == 2)) || usage_error "usage: $prog stop DIR [K]"
    set_dir "${positional[0]}"
    load_env
    cmd_stop "${positional[1]:-}"
    ;;
  kill | restart | bootstrap)
    ((${#positional[@]} == 2)) || usage_error "usage: $prog $command DIR K"
    set_dir "${positional[0]}"
    load_env
    "cmd_$command" "${positional[1]}"
    ;;
  status)
    ((${#positional[@]} == 1)) || usage_error "usage: $prog status DIR"
    set_dir "${positional[0]}"
    load_env
    cmd_status
    ;;
  *) usage_error "unknown command '$command'" ;;
esac
