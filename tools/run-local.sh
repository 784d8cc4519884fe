#!/usr/bin/env bash
# Runs the whole system on this machine, from a fresh Debian bookworm:
# installs what is missing, builds, starts MariaDB and mosquitto on
# 127.0.0.1 with their data under .state/ (kept between runs: history stays),
# and runs the relay in the foreground. Ctrl-C stops all three.
#
# Ports: MQTT_PORT (default 1883), DB_PORT (default 3306), WS_PORT (default
# 8080: MQTT over WebSocket, and the messenger page at http://127.0.0.1:8080/).
# STATE_DIR (default .state/) holds the data; one run at a time uses it.
# BUILD_DIR (default build/) is where the relay is built.
# A default port another server holds gives way to a free one (the banner
# says which); a port given that is in use stops the run.
# Extra arguments go to the relay, e.g.  tools/run-local.sh --immediate 'sensors/#'
# (its options: build/relay/seqrelay --help, or docs/operations.md).
set -euo pipefail
case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
# The relay options this script sets itself: said now, not after the
# install, the build and the servers' start.
for arg in "$@"; do
  case "$arg" in
    --mqtt-port|--mqtt-port=*|--db-port|--db-port=*|--db-user|--db-user=*|--db-name|--db-name=*|--journal-dir|--journal-dir=*)
      echo "run-local: ${arg%%=*} is set by run-local.sh (ports: MQTT_PORT, DB_PORT; the journal and the data: STATE_DIR)" >&2
      exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
PATH=$PATH:/usr/sbin:/sbin  # mariadbd and mosquitto, for a user whose PATH lacks them
state=${STATE_DIR:-$root/.state}
build=${BUILD_DIR:-$root/build}
# One run at a time on a state directory: a second one's servers would
# fail on the first's data (MariaDB after about 30 s of retries, on the
# locks of its files). The lock's descriptor is inherited by the servers and
# the relay, so it is held until the last of them ends, also when this
# script was killed and left them running.
mkdir -p "$state"
exec {lock}>>"$state/run-local.lock"
if ! flock -n "$lock"; then
  echo "run-local: $state is in use by another run-local.sh, or by the servers one left running" \
       "(pids: $(tr '\n' ' ' <"$state/run-local.pids" 2>/dev/null)); stop it first, or set STATE_DIR" >&2
  exit 1
fi
# Who holds it, for the message above: this script, then the servers and
# the relay as they start.
note_pids() { echo "$$ ${pids[*]} ${relay:-}" >"$state/run-local.pids"; }
# A port given is used, or the run stops; a default held by another server
# (the Debian packages start their own MariaDB and mosquitto on 3306 and
# 1883 where systemd runs) gives way to a free one, said at the start.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port() {  # variable name, default
  local given=${!1:-} p=$2
  if [[ -n $given ]] && ! [[ $given =~ ^[0-9]+$ && $given -ge 1 && $given -le 65535 ]]; then
    echo "run-local: $1=$given: give a port, 1 to 65535" >&2
    exit 2
  fi
  if [[ -n $given ]]; then
    if listening "$given"; then
      echo "run-local: $1=$given: port $given on 127.0.0.1 is in use; choose another" >&2
      exit 1
    fi
    echo "$given"
    return
  fi
  while listening "$p"; do p=$((p + 10000 > 65535 ? p + 1 : p + 10000)); done
  if [[ $p != "$2" ]]; then
    echo "run-local: port $2 is in use (a MariaDB or mosquitto of the system?): using $p ($1 sets it)" >&2
  fi
  echo "$p"
}
db_password=local-password

"$root/tools/deps.sh"
echo "run-local: building"
"$root/tools/build.sh" --target seqrelay "$build" >/dev/null

# The messenger page (clients/messenger) loads the JavaScript client and
# mqtt.js from its vendor/ folder, made from clients/js.
command -v npm >/dev/null || "$root/tools/deps.sh" nodejs npm || true
(cd "$root/clients/js" && { [[ -d node_modules/mqtt ]] || npm ci --omit=dev --silent; } &&
  node scripts/bundle.js --copy-to "$root/clients/messenger/vendor") ||
  echo "run-local: the messenger page could not be bundled (npm ci failed); MQTT works without it"

# After the install: it may have started the system's servers.
mqtt_port=$(port MQTT_PORT 1883)
db_port=$(port DB_PORT 3306)
ws_port=$(port WS_PORT 8080)
if [[ $mqtt_port == "$db_port" || $mqtt_port == "$ws_port" || $db_port == "$ws_port" ]]; then
  echo "run-local: MQTT_PORT $mqtt_port, DB_PORT $db_port and WS_PORT $ws_port must differ" >&2
  exit 2
fi

socket="$state/mysqld.sock"
if (( ${#socket} >= 100 )); then socket=$(mktemp -u /tmp/seqrelay-XXXXXX.sock); fi

pids=() relay=
note_pids
cleanup() {
  trap - INT TERM EXIT
  # mosquitto first, then MariaDB
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  rm -f "$state/run-local.pids"
  echo "run-local: stopped (data kept in $state)"
}
trap cleanup INT TERM EXIT

wait_port() {  # port, name, pid, log
  for _ in $(seq 300); do
    if listening "$1"; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then echo "run-local: $2 exited; its log:"; tail -20 "$4"; exit 1; fi
    sleep 0.1
  done
  echo "run-local: $2 did not open port $1; its log:"; tail -20 "$4"; exit 1
}

# MariaDB runs as whoever runs this script. Its data directory is made
# aside and renamed once complete: a first run that failed or was cut short
# leaves none half made, and the next run makes it again.
me=$(id -un)
if [[ ! -d "$state/mariadb" ]]; then
  echo "run-local: creating the database in $state/mariadb"
  rm -rf "$state/mariadb.new"
  if ! mariadb-install-db --no-defaults --user="$me" --datadir="$state/mariadb.new" \
       --auth-root-authentication-method=normal --skip-test-db >"$state/mariadb-install.log" 2>&1; then
    echo "run-local: mariadb-install-db failed; its log ($state/mariadb-install.log):" >&2
    tail -20 "$state/mariadb-install.log" >&2
    exit 1
  fi
  mv "$state/mariadb.new" "$state/mariadb"
fi
# The servers get sessions of their own (setsid): Ctrl-C reaches only the
# relay, which commits and publishes what it holds while both are still up;
# cleanup() then stops mosquitto, then MariaDB.
setsid mariadbd --no-defaults --user="$me" --datadir="$state/mariadb" --socket="$socket" --port="$db_port" \
  --bind-address=127.0.0.1 --skip-name-resolve >>"$state/mariadb.log" 2>&1 &
pids+=($!)
note_pids
wait_port "$db_port" mariadbd "${pids[-1]}" "$state/mariadb.log"
# Its socket too, which the statements below use: it can come a moment
# after the port (on a busy machine, long enough to fail them).
for _ in $(seq 300); do
  mariadb-admin --no-defaults -S "$socket" -uroot ping >/dev/null 2>&1 && break
  if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "run-local: mariadbd exited; its log:"; tail -20 "$state/mariadb.log"; exit 1; fi
  sleep 0.1
done
# Every run (each is a no-op once done): a first run cut short after the
# data directory was made still gets them.
mariadb --no-defaults -S "$socket" -uroot -e "
  CREATE DATABASE IF NOT EXISTS seqrelay;
  CREATE USER IF NOT EXISTS 'seqrelay'@'%' IDENTIFIED BY '$db_password';
  GRANT ALL ON seqrelay.* TO 'seqrelay'@'%';"

# Every client may do anything (a local trial, no passwords), except the
# relay's intake link: it reads the raw topics and never the relay's own
# frames and control topics, which its --source '#' would otherwise bring
# back (mosquitto checks "deny" lines first). As docker/mosquitto/acl; with
# another --seq-prefix or --control-prefix, change the deny lines to match.
cat >"$state/acl" <<ACL
topic readwrite #
topic read \$SYS/#
pattern readwrite #
pattern read \$SYS/#

user seqrelay-intake
topic deny seq/#
topic deny relay/#
topic read #
ACL
cat >"$state/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
# Browsers: MQTT over WebSocket, and the messenger page served from http_dir.
listener $ws_port 127.0.0.1
protocol websockets
http_dir $root/clients/messenger
allow_anonymous true
acl_file $state/acl
user root
# Nagle's algorithm adds ~5 ms per hop on loopback.
set_tcp_nodelay true
# No per-client queue limit: the relay's persistent session must not lose
# messages while the relay restarts (the default, 1000, drops silently).
max_queued_messages 0
# The relay's --max-payload (1 MiB) plus its 10-byte frame header: the relay
# checks at start that a frame of that size gets through.
message_size_limit 1048586
persistence true
persistence_location $state/
autosave_interval 1
log_dest file $state/mosquitto.log
CONF
setsid mosquitto -c "$state/mosquitto.conf" &
pids+=($!)
note_pids
wait_port "$mqtt_port" mosquitto "${pids[-1]}" "$state/mosquitto.log"

cat <<BANNER

  seqrelay is starting: mosquitto on 127.0.0.1:$mqtt_port, MariaDB on 127.0.0.1:$db_port
  (data in $state). The messenger: http://127.0.0.1:$ws_port/ (any user name,
  no password). In another terminal:

    mosquitto_sub -p $mqtt_port -t 'seq/#' -F '%t %x'   # sequenced frames in hex (10-byte header + payload)
    mosquitto_pub -p $mqtt_port -t chat/room1 -m hello  # any raw topic
    mariadb -S $(printf %q "$socket") -uroot seqrelay \\
      -e "SELECT SEQ, MSG FROM MSG WHERE ID = 'chat/room1' ORDER BY SEQ"   # the audit trail

  Ctrl-C stops the relay, mosquitto and MariaDB.

BANNER
intake_user=(--mqtt-intake-user seqrelay-intake)
journal=(--journal-dir "$state/journal")
for arg in "$@"; do
  if [[ $arg == --mqtt-intake-user* ]]; then intake_user=(); fi  # the caller's own
  if [[ $arg == --no-journal ]]; then journal=(); fi
done
# The relay runs as a child this script waits for: Ctrl-C, or a SIGTERM
# sent to the script, is passed on to it as SIGTERM (bash would hold a
# trap until a foreground child exits); it commits and publishes what it
# holds and exits, and then the EXIT trap stops mosquitto and MariaDB.
SEQRELAY_DB_PASSWORD=$db_password "$build/relay/seqrelay" \
  --mqtt-port "$mqtt_port" --db-port "$db_port" --db-user seqrelay --db-name seqrelay \
  "${intake_user[@]}" "${journal[@]}" "$@" &
relay=$!
note_pids
trap 'kill -TERM "$relay" 2>/dev/null || true' INT TERM
while kill -0 "$relay" 2>/dev/null; do wait "$relay" || true; done  # (a trapped signal ends a wait early)
wait "$relay" && status=0 || status=$?  # its exit code, kept by bash
exit "$status"  # the relay's own: 2 for a bad option (the trap stops the servers)
