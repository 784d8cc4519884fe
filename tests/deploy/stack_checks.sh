# Checks against the running compose stack, by value. Sourced by
# tools/test-docker.sh, which provides dc (docker-compose with the test
# override), say, die, $work, $project, $project_filter, $bob_pw and the
# secrets of $work/env. Every wait polls against a deadline.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The stack's ports on the host (tools/test-docker.sh chooses them).
probe() { /usr/bin/python3 "$here/mqtt_probe.py" --port "${MQTT_HOST_PORT:-1883}" "$@"; }
as_alice=(--user alice --password "$ALICE_MQTT_PASSWORD")

# The relay image run beside the stack, for its files (no healthcheck timer:
# there is no systemd here to run one).
in_image() { podman run --rm --no-healthcheck "$@"; }
# Container ids, looked up again after every `up` (a docker-compose call
# costs about a second; podman exec on the id does not).
declare -A ids
find_ids() { local s; for s in mosquitto mysql relay; do ids[$s]=$(dc ps -q "$s"); done; }
cid() { echo "${ids[$1]}"; }
# Reads through the database container, as an operator would.
sql() { podman exec "$(cid mysql)" mysql -uroot -p"$MYSQL_ROOT_PASSWORD" -N -B seqrelay -e "$1"; }
metric() { curl -sf "http://127.0.0.1:${METRICS_HOST_PORT:-9108}/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

wait_for() {  # seconds, description, command...
  # With why=FUNCTION in its environment, a timeout says what FUNCTION prints too.
  local deadline=$(( $(date +%s) + $1 )) what=$2
  shift 2
  until "$@"; do
    (( $(date +%s) < deadline )) || die "timed out: $what${why:+; $($why)}"
    sleep 0.2
  done
}
health() { podman inspect --format '{{.State.Health.Status}}' "$(cid "$1")" 2>/dev/null; }
all_healthy() {
  local s
  for s in mosquitto mysql relay; do [[ $(health "$s") == healthy ]] || return 1; done
}
# One container's state and health, with the output of its last checks.
health_detail() {  # container id
  podman inspect --format '{{.State.Status}}, {{.State.Health.Status}}, {{.State.Health.FailingStreak}} failing{{range .State.Health.Log}} | exit {{.ExitCode}}: {{.Output}}{{end}}' "$1" 2>&1 |
    tr -s '\n' ' ' | tail -c 600
}
stack_health_report() { local s; for s in mosquitto mysql relay; do printf '%s: %s\n' "$s" "$(health_detail "$(cid "$s")")"; done; }
up_healthy() {  # brings the stack up and waits until every service's own HEALTHCHECK passes
  local t=$(date +%s)
  dc up -d --no-build >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "docker-compose up failed"; }
  find_ids
  why=stack_health_report wait_for 180 "every service healthy" all_healthy
  say "stack up, all three services healthy ($(( $(date +%s) - t )) s)"
}
rows() { sql "SELECT COUNT(*) FROM MSG WHERE ID = '$1'"; }
at_least_rows() { (( $(rows "$1") >= $2 )); }

# Every payload the broker acknowledged (the probe's --acked file) is in MSG,
# and the topic's SEQs are 1..N without a gap (checked twice: by SQL through
# the database container, and by seqaudit inside the relay's container).
check_trail() {  # topic, acked file
  local topic=$1 acked=$2 missing counts
  sql "SELECT MSG FROM MSG WHERE ID = '$topic'" | sort -u > "$work/stored"
  missing=$(comm -23 <(sort -u "$acked") "$work/stored" | wc -l)
  ((missing == 0)) || die "$topic: $missing acknowledged messages are not in MSG, e.g. $(comm -23 <(sort -u "$acked") "$work/stored" | head -3 | tr '\n' ' ')"
  counts=$(sql "SELECT COUNT(*), COUNT(DISTINCT MSG), MIN(SEQ), MAX(SEQ) FROM MSG WHERE ID = '$topic'")
  read -r n distinct first last <<<"$counts"
  [[ $first == 1 && $last == "$n" ]] || die "$topic: SEQ $first..$last over $n rows: a gap"
  podman exec "$(cid relay)" seqaudit --db-host mysql --db-user seqrelay --db-password "$RELAY_DB_PASSWORD" \
    --db-name seqrelay --topic "$topic" >"$work/audit" || die "$topic: seqaudit: $(cat "$work/audit")"
  say "$topic: $(wc -l < "$acked") acknowledged, all in MSG; $n rows, SEQ 1..$last, no gap, $((n - distinct)) stored twice; seqaudit: $(head -1 "$work/audit" | tr -s ' ')"
}

# A QoS 1 load on topic ($load_count messages at 100/s) while "$@" runs
# against the stack once 50 are stored. Its last $load_hold wait for the
# file $load_hurry, which the command touches as soon as its blow is
# struck (the kill, the restart); then the rest goes unpaced. So the load
# cannot end before the command, and the command checks that it struck
# while the paced part still ran: 29 s of it leave room for podman
# commands that take seconds on a busy machine (a kill came 614 messages
# in, beside the sanitizer stage). Then nothing acknowledged may be
# missing.
load_count=3000 load_hold=100 load_hurry=""
load_through() {  # topic, command...
  local topic=$1 out=$work/load-${1//\//_}
  shift
  load_hurry=$out.hurry
  probe load "${as_alice[@]}" --topic "$topic" --count "$load_count" --rate 100 --acked "$out.acked" \
    --hurry-file "$load_hurry" --hold-last "$load_hold" --timeout 120 >"$out" 2>"$out.err" &
  load_pid=$!
  wait_for 30 "the first 50 messages of $topic stored" at_least_rows "$topic" 50
  "$@"
  touch "$load_hurry"
  wait "$load_pid" || { load_pid=""; die "$topic: load failed: $(cat "$out" "$out.err")"; }
  load_pid=""
  say "$topic load: $(cat "$out")"
  check_trail "$topic" "$out.acked"
}
# What a command of load_through says of the rows stored when it struck.
struck_midway() {  # stored, what
  (($1 < load_count - load_hold)) ||
    die "$2 came after the paced part of the load ($1 of $load_count stored): nothing was under way"
}

kill_relay_and_up() {
  # podman itself, not docker-compose (a Python program that takes seconds
  # to start on a busy machine): the signal is the same.
  local kill_started=$SECONDS
  podman kill --signal KILL "$(cid relay)" >/dev/null || die "podman kill of the relay failed"
  local code
  code=$(timeout 30 podman wait "$(cid relay)") || die "podman wait for the killed relay failed"
  [[ $code == 137 ]] || die "relay exit code after SIGKILL: $code, expected 137"
  local stored
  stored=$(rows chat/kill)  # no more: the relay is dead
  touch "$load_hurry"
  struck_midway "$stored" "the kill"
  say "relay killed (SIGKILL, exit 137, $((SECONDS - kill_started)) s) with $stored of $load_count rows stored"
  dc up -d --no-build relay >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "up after kill failed"; }
  why=stack_health_report wait_for 60 "relay healthy after the kill" all_healthy
}
restart_database() {
  local stored
  stored=$(rows chat/dbrestart)  # as the restart begins
  dc restart mysql >/dev/null 2>&1 || die "docker-compose restart mysql failed"
  touch "$load_hurry"
  struck_midway "$stored" "the restart"
  # The container is up again when restart returns, the server a moment later.
  db_answers() { sql "SELECT 1" >/dev/null 2>&1; }
  wait_for 60 "the database answering after the restart" db_answers
  say "database restarted with $stored of $load_count rows stored when it began"
  why=stack_health_report wait_for 60 "database healthy after the restart" all_healthy
}

# MySQL 8.4's default login, caching_sha2_password, from the image's
# Connector/C++ on libmariadb: seqaudit against tests/deploy/caching_sha2_server.py
# (no MySQL 8.4 to run here). First login: full authentication with the RSA
# key fetched from the server; second: the server's cache; wrong password:
# refused. The server answers SQL with an error naming itself, so seqaudit
# fails after a login and tells which way.
check_caching_sha2_login() {  # image
  /usr/bin/python3 "$here/caching_sha2_server.py" 0 seqrelay sha2-secret >"$work/sha2.log" 2>&1 &
  sha2_pid=$!
  has_port() { grep -q '^listening on' "$work/sha2.log"; }
  wait_for 10 "the caching_sha2 test server listening" has_port
  local port out expect
  port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$work/sha2.log")
  for pw_and_expect in "sha2-secret:logged in" "sha2-secret:logged in" "wrong:Access denied"; do
    expect=${pw_and_expect#*:}
    out=$(in_image --network host --entrypoint seqaudit "$1" --db-host 127.0.0.1 --db-port "$port" \
          --db-user seqrelay --db-password "${pw_and_expect%%:*}" --db-name seqrelay 2>&1 || true)
    [[ $out == *"$expect"* ]] || die "caching_sha2_password login: expected '$expect', seqaudit said: $out"
  done
  kill "$sha2_pid"; wait "$sha2_pid" 2>/dev/null || true; sha2_pid=""
  local logins
  logins=$(grep '^login' "$work/sha2.log" | tr '\n' ';')
  [[ $logins == "login seqrelay: full (RSA key exchange);login seqrelay: fast;login seqrelay: refused: wrong password (full authentication);" ]] ||
    die "caching_sha2_password logins: $logins"
  say "caching_sha2_password (MySQL 8.4's default): $logins"
}

# What the programs a script runs in a container get on their command
# lines, an argument a line: the script run by sh with each of the named
# programs replaced by a stub that records its arguments and reads its
# input. The command given runs sh in the container; it gets `-s`.
args_given() {  # script, "program...", command...
  local script=$1 programs=$2
  shift 2
  "$@" -s -- "$script" "$programs" <<'EOF'
d=$(mktemp -d) || exit 1
cat > "$d/stub" <<STUB
#!/bin/sh
for a in "\$@"; do printf '%s\n' "\$a"; done >> "$d/args"
cat > /dev/null
STUB
for p in $2; do cp "$d/stub" "$d/$p" && chmod +x "$d/$p"; done
PATH="$d:$PATH" sh -c "$1" < /dev/null > /dev/null 2>&1
cat "$d/args" 2>/dev/null
rm -rf "$d"
EOF
}

# No password on a command line, which every user of the host can read (ps):
# mosquitto's and MySQL's healthchecks run in their containers, and
# mosquitto's entrypoint in a container of its image, with their clients
# recorded.
check_no_secret_in_argv() {
  local c script args secret image
  local secrets=("$RELAY_MQTT_PASSWORD" "$ALICE_MQTT_PASSWORD" "$RELAY_DB_PASSWORD" "$MYSQL_ROOT_PASSWORD")
  # The script of a ["CMD-SHELL", script] or ["sh", "-c", script], which
  # podman 4.3 shows joined into one string for an entrypoint.
  script_of() {
    /usr/bin/python3 -c 'import json, sys; v = json.load(sys.stdin)
print(v[-1] if isinstance(v, list) else v.removeprefix("sh -c "))'
  }
  no_secret_in() {  # what, recorded arguments
    [[ -n $2 ]] || die "$1 ran none of the programs it should"
    for secret in "${secrets[@]}"; do
      ! grep -qF -- "$secret" <<<"$2" || die "$1 puts a password on a command line: $(tr '\n' ' ' <<<"$2")"
    done
  }
  for c in mosquitto mysql; do
    script=$(podman inspect --format '{{json .Config.Healthcheck.Test}}' "$(cid "$c")" | script_of)
    args=$(args_given "$script" "mosquitto_sub mysql" podman exec -i "$(cid "$c")" sh)
    no_secret_in "the $c healthcheck" "$args"
  done
  script=$(podman inspect --format '{{json .Config.Entrypoint}}' "$(cid mosquitto)" | script_of)
  image=$(podman inspect --format '{{.ImageName}}' "$(cid mosquitto)")
  args=$(args_given "$script" "mosquitto_passwd mosquitto chown" \
    podman run --rm -i --no-healthcheck --env-file "$work/env" --entrypoint sh "$image")
  grep -qx seqrelay-intake <<<"$args" || die "mosquitto's entrypoint did not add the user seqrelay-intake: $args"
  no_secret_in "mosquitto's entrypoint" "$args"
  say "no password on a command line: both healthchecks and mosquitto's entrypoint, their clients recorded"
}

run_stack_checks() {
  # Volumes of this stack and of no other (the cluster stack's form beside it).
  our_volumes() { podman volume ls -q | grep -v "^${cluster_project:-}_" | sort || true; }
  local volumes_before
  volumes_before=$(our_volumes)
  say "compose up (first start: empty volumes)"
  up_healthy
  local relay uid pid1 want_uid
  relay=$(cid relay)

  # The image: no compiler, the tools, the version label, the auth plugin.
  local img=localhost/seqrelay:test
  in_image --entrypoint sh "$img" -c \
    'for c in cc gcc g++ c++ cpp clang as ld; do command -v "$c" && exit 1; done; exit 0' >"$work/cc" ||
    die "the runtime image has a compiler or toolchain: $(cat "$work/cc")"
  local label version
  label=$(podman image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}}' "$img")
  version=$(in_image "$img" --version)
  [[ "$version" == "seqrelay $label" ]] || die "label version '$label', binary says '$version'"
  in_image --entrypoint seqsub "$img" --help >/dev/null || die "seqsub --help failed in the image"
  in_image --entrypoint seqaudit "$img" --help >/dev/null || die "seqaudit --help failed in the image"
  in_image --entrypoint sh "$img" -c 'ls /usr/lib/*/libmariadb3/plugin/caching_sha2_password.so' >/dev/null ||
    die "the image lacks libmariadb's caching_sha2_password plugin"
  say "image: no compiler, seqsub and seqaudit run, label version $label = '$version'"
  check_caching_sha2_login "$img"

  # The relay is PID 1 of its container, as its non-root user.
  want_uid=$(in_image --entrypoint id "$img" -u seqrelay)
  pid1=$(podman exec "$(cid relay)" cat /proc/1/comm)
  uid=$(podman exec "$(cid relay)" awk '/^Uid:/ {print $2}' /proc/1/status)
  [[ $pid1 == seqrelay ]] || die "PID 1 of the relay container is '$pid1'"
  [[ $uid == "$want_uid" && $uid != 0 ]] || die "the relay runs as uid $uid, expected seqrelay ($want_uid)"
  say "relay is PID 1 as uid $uid (seqrelay)"
  check_no_secret_in_argv

  # A second application user whom the shipped ACL gives nothing: added the
  # way docs/docker.md says (the password on mosquitto_passwd's input),
  # then mosquitto reloads on SIGHUP.
  printf '%s\n%s\n' "$bob_pw" "$bob_pw" | podman exec -i "$(cid mosquitto)" sh -c \
    'mosquitto_passwd /mosquitto/data/passwords bob > /dev/null &&
     chown mosquitto:mosquitto /mosquitto/data/passwords && kill -HUP 1' || die "could not add user bob"
  bob_can_log_in() {
    mosquitto_sub -h 127.0.0.1 -p "${MQTT_HOST_PORT:-1883}" -u bob -P "$bob_pw" -t relay/replay/bob/ping -E 2>/dev/null
  }
  wait_for 10 "bob can log in after the reload" bob_can_log_in

  # Publish on the published port as alice; the frame comes back on seq/T
  # and the row is in MSG.
  probe roundtrip "${as_alice[@]}" --topic chat/deploy --payload "hello from the host" --seq 1 \
    >"$work/roundtrip" || die "round trip failed"
  say "round trip: $(cat "$work/roundtrip")"
  local row
  row=$(sql "SELECT SEQ, MSG FROM MSG WHERE ID = 'chat/deploy'")
  [[ $row == $'1\thello from the host' ]] || die "MSG holds '$row' for chat/deploy"
  say "MSG, read in the database container: chat/deploy SEQ 1 'hello from the host'"

  # /metrics on its published port, by value.
  local committed db_up intake
  committed=$(metric seqrelay_messages_committed_total)
  db_up=$(metric seqrelay_database_up)
  intake=$(metric 'seqrelay_broker_connected{link="intake"}')
  [[ $committed == 1 && $db_up == 1 && $intake == 1 ]] ||
    die "/metrics: committed $committed, database_up $db_up, intake connected $intake; expected 1, 1, 1"
  say "/metrics on 127.0.0.1:${METRICS_HOST_PORT:-9108}: committed 1, database up, intake connected"

  # bob may neither read seq/T nor have it replayed; alice may.
  probe denied --user bob --password "$bob_pw" --allowed-user alice --allowed-password "$ALICE_MQTT_PASSWORD" \
    --topic chat/deploy >"$work/denied" || die "ACL check failed: $(cat "$work/denied")"
  say "denied user: $(cat "$work/denied")"
  probe replay "${as_alice[@]}" --topic chat/deploy --expect 2 >"$work/replay" || die "alice's replay failed"
  say "allowed user's replay: $(cat "$work/replay")"

  # The journal is written to the relay's volume.
  local vol jdir
  vol=$(podman volume inspect --format '{{.Mountpoint}}' "${project}_relay-data")
  jdir=$vol/journal
  [[ -d $jdir && -n $(find "$jdir" -type f -size +0 -user "$want_uid") ]] ||
    die "no journal written by the relay in its volume ($jdir): $(ls -la "$jdir" 2>&1)"
  say "journal in volume ${project}_relay-data: $(find "$jdir" -type f -printf '%f %s B; ' )"

  # SIGKILL of the relay under QoS 1 load, then up again.
  load_through chat/kill kill_relay_and_up
  [[ $(podman volume inspect --format '{{.Mountpoint}}' "${project}_relay-data") == "$vol" ]] ||
    die "the relay's volume was replaced"

  # The database restarted under load.
  load_through chat/dbrestart restart_database

  # SIGTERM (docker stop) ends the relay cleanly: exit 0.
  local t=$(date +%s) code
  dc stop -t 40 relay >/dev/null 2>&1 || die "docker-compose stop relay failed"
  code=$(podman inspect --format '{{.State.ExitCode}}' "$relay")
  [[ $code == 0 ]] || die "relay exit code after SIGTERM: $code"
  # Read whole, then searched: 'podman logs | grep -q' fails under pipefail
  # when grep stops reading early and podman dies of SIGPIPE (seen once).
  local relay_log
  relay_log=$(podman logs "$relay" 2>&1)
  grep -q 'received SIGTERM, stopping' <<<"$relay_log" || die "no 'received SIGTERM' in the relay's log"
  say "docker-compose stop: relay logged 'received SIGTERM, stopping', exit 0 after $(( $(date +%s) - t )) s"

  # down keeps the volumes and leaves nothing running; up finds the data.
  local before
  before=$(sql "SELECT COUNT(*) FROM MSG")
  dc down >/dev/null 2>&1 || die "docker-compose down failed"
  [[ -z $(podman ps -aq --filter "$project_filter") ]] || die "containers left after down: $(podman ps -a --filter "$project_filter")"
  say "down: no container of $project left; $(podman volume ls -q --filter "$project_filter" | wc -l) volumes kept"
  up_healthy
  [[ $(sql "SELECT COUNT(*) FROM MSG") == "$before" ]] || die "after down and up, MSG has not the $before rows it had"
  say "up again: MSG still has its $before rows"

  # down -v and up: an empty database, SEQ starts at 1 again.
  dc down -v >/dev/null 2>&1 || die "docker-compose down -v failed"
  [[ -z $(podman ps -aq --filter "$project_filter") ]] || die "containers left after down -v"
  [[ -z $(podman volume ls -q --filter "$project_filter") ]] || die "volumes left after down -v"
  [[ $(our_volumes) == "$volumes_before" ]] ||
    die "down -v left volumes behind: $(comm -13 <(echo "$volumes_before") <(our_volumes))"
  up_healthy
  [[ $(sql "SELECT COUNT(*) FROM MSG") == 0 ]] || die "after down -v and up, MSG is not empty"
  probe roundtrip "${as_alice[@]}" --topic chat/deploy --payload "after down -v" --seq 1 >"$work/roundtrip" ||
    die "round trip after down -v failed"
  say "down -v, up: MSG empty, chat/deploy starts again at SEQ 1"
}
