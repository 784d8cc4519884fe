#!/usr/bin/env bash
# What can be checked of docker/ without a container engine (the stack
# itself is built and run by tools/test-docker.sh):
#  1. compose.yaml validates (Debian's docker-compose), with the example
#     secrets, and refuses to run without them;
#  2. the Dockerfile's build stage uses the suite's package list and build
#     script, so the image and the tests cannot drift, and labels the
#     project's version;
#  3. the shipped mosquitto.conf keeps the settings the relay depends on.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
docker=$root/docker
fail() { echo "check_docker: $*" >&2; exit 1; }

docker-compose --env-file "$docker/.env.example" -f "$docker/compose.yaml" config -q ||
  fail "compose.yaml does not validate"
empty=$(mktemp)
trap 'rm -f "$empty" "$empty.single" "$empty.cluster"' EXIT
if docker-compose --env-file "$empty" -f "$docker/compose.yaml" config -q 2>/dev/null; then
  fail "compose.yaml validates without secrets; it must demand them"
fi

grep -q '^COPY tools/packages.txt' "$docker/Dockerfile" || fail "the Dockerfile does not use tools/packages.txt"
# The build stage installs the "build" section of the suite's package list.
section="sed -n '/^# build\$/,/^# /{/^#/!p}' tools/packages.txt"
grep -qF "RUN $section" "$docker/Dockerfile" || fail "the Dockerfile does not install the build section of tools/packages.txt"
for p in cmake g++ libmosquitto-dev libmysqlcppconn-dev; do
  (cd "$root" && eval "$section") | grep -qx "$p" || fail "the build section of tools/packages.txt lacks $p"
done
grep -q '^RUN tools/build.sh ' "$docker/Dockerfile" || fail "the Dockerfile does not build with tools/build.sh"
# The image's version label is the project's version (the build also checks
# it against the binary's --version).
version=$(sed -n 's/^project(seqrelay VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
[[ $(grep -c "^ARG VERSION=$version\$" "$docker/Dockerfile") == 2 ]] ||
  fail "the Dockerfile's ARG VERSION is not the project's version $version"
grep -q '^USER seqrelay$' "$docker/Dockerfile" || fail "the runtime stage must not run as root"
grep -q '^HEALTHCHECK' "$docker/Dockerfile" || fail "the Dockerfile has no HEALTHCHECK"

conf=$docker/mosquitto/mosquitto.conf
for line in 'set_tcp_nodelay true' 'persistence true' 'autosave_interval 1' 'allow_anonymous false' \
            'message_size_limit 1048586' 'max_queued_messages 300000' 'listener 1883' \
            'use_username_as_clientid true' 'listener 1884'; do
  grep -qx "$line" "$conf" || fail "mosquitto.conf lacks '$line'"
done
grep -q 'SEQRELAY_ACL_FILE: /etc/seqrelay/acl' "$docker/compose.yaml" || fail "the relay does not read the ACL"
grep -q 'SEQRELAY_MQTT_PORT: "1884"' "$docker/compose.yaml" || fail "the relay must use its own listener"
grep -q 'SEQRELAY_METRICS_PORT: "9108"' "$docker/compose.yaml" || fail "compose.yaml must enable /metrics"

# The cluster file: valid, demands the secrets, and its relay and mosquitto
# are compose.yaml's but for the database the relay is given and waits for.
cluster=$docker/compose.cluster.yaml
docker-compose --env-file "$docker/.env.example" -f "$cluster" config >"$empty.cluster" ||
  fail "compose.cluster.yaml does not validate"
if docker-compose --env-file "$empty" -f "$cluster" config -q 2>/dev/null; then
  fail "compose.cluster.yaml validates without secrets; it must demand them"
fi
docker-compose --env-file "$docker/.env.example" -f "$docker/compose.yaml" config >"$empty.single"
/usr/bin/python3 - "$empty.single" "$empty.cluster" <<'EOF' || fail "compose.cluster.yaml's relay or mosquitto differs from compose.yaml's"
import sys, yaml
single, cluster = (yaml.safe_load(open(f))["services"] for f in sys.argv[1:3])
ok = True
for name in ("mosquitto", "relay"):
    a, b = dict(single[name]), dict(cluster[name])
    for s in (a, b):  # extends may reorder these
        for key in ("volumes", "ports"):
            s[key] = sorted(map(str, s.get(key, [])))
    if name == "relay":
        for s in (a, b):
            s.pop("depends_on", None)
            s["environment"] = {k: v for k, v in s["environment"].items() if k != "SEQRELAY_DB_HOST"}
        want = "db1:3306,db2:3306,db3:3306"
        if cluster[name]["environment"].get("SEQRELAY_DB_HOST") != want:
            print(f"the cluster's relay is not given {want}", file=sys.stderr); ok = False
    if a != b:
        print(f"{name}: {a} != {b}", file=sys.stderr); ok = False
sys.exit(0 if ok else 1)
EOF
rm -f "$empty.single" "$empty.cluster"
for line in 'wsrep_provider = /usr/lib/galera/libgalera_smm.so' 'wsrep_cluster_address = gcomm://db1,db2,db3' \
            'binlog_format = ROW' 'innodb_autoinc_lock_mode = 2' 'wsrep_sst_method = mariabackup'; do
  grep -qx "$line" "$docker/mariadb/galera.cnf" || fail "galera.cnf lacks '$line'"
done
echo "check_docker: compose.yaml and compose.cluster.yaml valid, Dockerfile uses the shared scripts, mosquitto.conf and galera.cnf as required"
