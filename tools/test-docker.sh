#!/usr/bin/env bash
# The container path, run for real: builds docker/Dockerfile, brings up the
# compose stack (docker/compose.yaml with the docker/compose.test.yaml
# override) with podman behind Debian's docker-compose, and checks it by
# value (tests/deploy/stack_checks.sh); then the cluster stack
# (docker/compose.cluster.yaml: a 3-node Galera cluster; with the
# docker/compose.cluster.test.yaml override), checked by
# tests/deploy/cluster_checks.sh. The cluster's database nodes form beside
# the first stack's checks (they publish no port), so the two stacks share
# one podman service and the images, and the cluster adds little time.
#
# No registry is reachable here, so:
#  - the base image debian:bookworm is made with debootstrap, once, and kept
#    in $SEQTEST_IMAGE_CACHE (default /var/cache/seqrelay) for later runs;
#  - the official eclipse-mosquitto, mysql and mariadb images are replaced
#    by local Debian-based stand-ins (docker/stand-ins/), see
#    compose.test.yaml and compose.cluster.test.yaml.
#
# Usage: tools/test-docker.sh [--cluster] [--keep | --prepare | --images] [--prebuilt DIR]   (as root)
#   --cluster  the cluster stack only
#   --keep     leaves the stack up (without --cluster: the single-node stack
#              only, whose ports the cluster stack would need)
#   --prepare  only installs the tools, makes the base images and builds
#              what needs no compiler: the three stand-ins and the relay
#              image's package stages, build-deps and runtime-deps (with
#              --prebuilt, runtime-deps only; DIR is not looked at yet)
#              (network and dpkg, at the lowest priority: tools/test.sh
#              runs it beside the build)
#   --images   also builds the images, then stops (podman keeps their layers:
#              the full run that follows finds them built; tools/test.sh
#              --long runs it, compiling, beside the sanitizer pass)
#   --prebuilt DIR
#              the relay image ships the three programs of DIR (a Release
#              build of this checkout without sanitizers, on this bookworm
#              host: DIR/relay/seqrelay, DIR/tools/seqsub,
#              DIR/tools/seqaudit, stripped on the way in), not ones
#              compiled in the image: its final stage is docker/Dockerfile's,
#              on the runtime-deps stage, with only the COPY of the binaries
#              taken from DIR. The image then holds the binaries the suite
#              has just tested, and its build compiles nothing (tools/test.sh
#              without --long; with --long, and without this option, the
#              Dockerfile compiles, as `docker compose build` does)
# Everything it starts (podman API service, containers, volumes, networks of
# the projects $project and $cluster_project) is removed on exit, failure
# included. Left in place: the base images' cache, podman's image layers,
# and podman's machine-wide settings, /etc/containers/containers.conf
# (runc, cgroupfs, open-file limits), written on first use when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SEQTEST_IMAGE_CACHE:-/var/cache/seqrelay}
project=seqrelay-test
cluster_project=seqrelay-cluster-test
keep=0 prepare=0 images_only=0 single=1 cluster=1 prebuilt="" work=""
usage() { echo "usage: tools/test-docker.sh [--cluster] [--keep | --prepare | --images] [--prebuilt DIR] (see --help)" >&2; exit 2; }
while (($#)); do
  case $1 in
    --cluster) single=0 ;;
    --keep) keep=1 ;;
    --prepare) prepare=1 ;;
    --images) images_only=1 ;;
    --prebuilt) (($# > 1)) && [[ -n $2 ]] || usage; prebuilt=$2; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) usage ;;
  esac
  shift
done
if ((keep && single)); then cluster=0; fi
t0=$(date +%s)
say() { echo "== docker [$(( $(date +%s) - t0 )) s] $*"; }
# The reason is kept too: cleanup prints it again after the services' logs,
# which would otherwise bury it (a caller shows a failed run's last lines).
die() {
  echo "test-docker: $*" >&2
  [[ -n ${work:-} && -d ${work:-} ]] && echo "test-docker: $*" >>"$work/failure"
  exit 1
}
[[ $(id -u) -eq 0 ]] || die "needs root (podman as root, debootstrap)"
if [[ -n $prebuilt ]] && ((prepare == 0)); then
  prebuilt=$(cd "$prebuilt" 2>/dev/null && pwd) || die "--prebuilt: no directory '$prebuilt'"
  for f in relay/seqrelay tools/seqsub tools/seqaudit; do
    [[ -x $prebuilt/$f ]] || die "--prebuilt: no $prebuilt/$f (tools/build.sh builds it)"
  done
  # The image's build flags: Release, no sanitizer runtime to look for.
  cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$prebuilt/CMakeCache.txt" 2>/dev/null; }
  [[ $(cache_value CMAKE_BUILD_TYPE) == Release && -z $(cache_value SEQRELAY_SANITIZE) ]] ||
    die "--prebuilt: $prebuilt is not a Release build without sanitizers (CMAKE_BUILD_TYPE '$(cache_value CMAKE_BUILD_TYPE)', SEQRELAY_SANITIZE '$(cache_value SEQRELAY_SANITIZE)')"
  # Linked against this host's libraries, which must be the image's.
  (source /etc/os-release && [[ ${VERSION_CODENAME:-} == bookworm ]]) ||
    die "--prebuilt: this host is not Debian bookworm, the image's base; run without it"
fi

# ---- tools -----------------------------------------------------------------------
need=()
# dnsname: service names resolve on compose networks (podman 4.3 with CNI; not a
# dependency of podman, and without it the relay cannot find "mysql").
for p in podman runc golang-github-containernetworking-plugin-dnsname debootstrap docker-compose python3-paho-mqtt \
         python3-cryptography mosquitto-clients curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  dpkg --configure -a >/dev/null 2>&1 || true  # an install stopped half way
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Root here cannot raise the open-files hard limit, and cgroups are in hybrid
# mode (crun refuses it, runc works), so podman gets its settings in the
# machine-wide /etc/containers/containers.conf, written once and left there
# (said in --help and docs/docker.md); an existing file without them is
# not changed.
conf=/etc/containers/containers.conf
if ! grep -qs '^runtime = "runc"' "$conf"; then
  [[ -s $conf ]] && die "$conf exists without runtime = \"runc\"; add the settings of tools/test-docker.sh by hand"
  mkdir -p /etc/containers
  cat > "$conf" <<'EOF'
# Written by seqrelay's tools/test-docker.sh.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
fi

# ---- base images: debian:bookworm and :bookworm-slim without a registry ----------
# The slim one is the same tree without documentation, man pages and
# translations, and with dpkg told to leave them out of later installs (as
# the official bookworm-slim does): it is what the runtime stage starts from.
base_tar=$cache/debian-bookworm-minbase.tar
slim_tar=$cache/debian-bookworm-slim.tar
if [[ ! -s $base_tar || ! -s $slim_tar ]]; then
  say "making the base images with debootstrap (once; kept in $cache)"
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  mkdir -p "$cache"
  dir=$(mktemp -d "$cache/rootfs.XXXXXX")
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$dir"; die "debootstrap failed"; }
  mkdir -p "$dir/etc/apt/sources.list.d"
  [[ -f /etc/apt/sources.list.d/debian.sources ]] && cp /etc/apt/sources.list.d/debian.sources "$dir/etc/apt/sources.list.d/"
  rm -rf "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  [[ -f $dir/etc/apt/sources.list.d/debian.sources ]] && rm -f "$dir/etc/apt/sources.list"
  tar -C "$dir" -cf "$base_tar.part" . && mv "$base_tar.part" "$base_tar"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    'path-exclude /usr/share/lintian/*' > "$dir/etc/dpkg/dpkg.cfg.d/slim"
  find "$dir/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/usr/share/lintian/*
  tar -C "$dir" -cf "$slim_tar.part" . && mv "$slim_tar.part" "$slim_tar"
  rm -rf "$dir"
fi
import_base() {  # tar, tag
  podman image exists "docker.io/library/debian:$2" && return
  say "importing debian:$2"
  podman import -q --change 'CMD ["/bin/bash"]' "$1" "localhost/debian:$2" >/dev/null
  podman tag "localhost/debian:$2" "docker.io/library/debian:$2"
}
import_base "$base_tar" bookworm
import_base "$slim_tar" bookworm-slim
say "base images ready"

# ---- the run's own state, removed on exit ------------------------------------------
work=$(mktemp -d /tmp/seqrelay-docker.XXXXXX)
api_pid="" health_pid="" load_pid="" sha2_pid="" cluster_db_pid="" b1="" b2="" b3=""
export DOCKER_HOST=unix://$work/podman.sock
compose=(docker-compose -p "$project" --env-file "$work/env"
         -f "$root/docker/compose.yaml" -f "$root/docker/compose.test.yaml")
dc() { "${compose[@]}" "$@"; }
cluster_compose=(docker-compose -p "$cluster_project" --env-file "$work/env"
                 -f "$root/docker/compose.cluster.yaml" -f "$root/docker/compose.cluster.test.yaml")
dcc() { "${cluster_compose[@]}" "$@"; }
project_filter=label=com.docker.compose.project=$project
cluster_filter=label=com.docker.compose.project=$cluster_project
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null
  [[ -n $sha2_pid ]] && kill "$sha2_pid" 2>/dev/null
  [[ -n $cluster_db_pid ]] && kill "$cluster_db_pid" 2>/dev/null && wait "$cluster_db_pid" 2>/dev/null
  for b in $b1 $b2 $b3; do kill "$b" 2>/dev/null; done  # stand-in builds, if the relay's failed first
  if ((rc != 0)) && [[ -n $api_pid ]]; then
    echo "== docker: FAILED; the services' last log lines:" >&2
    ((single)) && dc logs --no-color --tail=40 >&2 2>/dev/null
    ((cluster)) && dcc logs --no-color --tail=40 >&2 2>/dev/null
    [[ -s $work/failure ]] && { echo "== docker: FAILED because:" >&2; cat "$work/failure" >&2; }
  fi
  if ((keep == 0)) && [[ -n $api_pid ]]; then
    dc down -v --remove-orphans -t 40 >/dev/null 2>&1 || true
    dcc down -v --remove-orphans -t 60 >/dev/null 2>&1 || true
    # Whatever compose could not remove (a failed `up` leaves half a project).
    for f in "$project_filter" "$cluster_filter"; do
      podman ps -aq --filter "$f" | xargs -r podman rm -f >/dev/null 2>&1 || true
      podman volume ls -q --filter "$f" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
      podman network ls -q --filter "$f" | xargs -r podman network rm -f >/dev/null 2>&1 || true
    done
  fi
  [[ -n $health_pid ]] && kill "$health_pid" 2>/dev/null && wait "$health_pid" 2>/dev/null
  if ((keep == 0)) && [[ -n $api_pid ]]; then kill "$api_pid" 2>/dev/null; wait "$api_pid" 2>/dev/null; fi
  if ((keep)); then
    if ((single)); then echo "== docker: left running (DOCKER_HOST=$DOCKER_HOST, API service PID $api_pid): ${compose[*]}"
    else echo "== docker: left running (DOCKER_HOST=$DOCKER_HOST, API service PID $api_pid): ${cluster_compose[*]}"; fi
  fi
  ((keep)) || rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- images ----------------------------------------------------------------------
# --format docker: podman's default OCI format would drop HEALTHCHECK.
build_opts=()
build() {  # tag, log name, podman build arguments...
  local tag=$1 name=$2
  shift 2
  podman build --pull=never --format docker "${build_opts[@]}" -t "$tag" "$@" >"$work/build-$name.log" 2>&1 ||
    { tail -40 "$work/build-$name.log" >&2; echo "test-docker: building $tag failed" >&2; return 1; }
}
build_stage() { build "localhost/seqrelay-$1:test" "$1" --target "$1" -f "$root/docker/Dockerfile" "$root"; }
# --prebuilt: docker/Dockerfile's final stage as it is but for two lines,
# its base (the runtime-deps stage, built by name) and the COPY of the
# three programs (from a context of their own, stripped as the build stage
# strips them).
build_prebuilt() {
  local ctx=$work/prebuilt f
  mkdir -p "$ctx/build/relay" "$ctx/build/tools"
  for f in relay/seqrelay tools/seqsub tools/seqaudit; do strip -o "$ctx/build/$f" "$prebuilt/$f" || return 1; done
  cp -r "$root/schema" "$ctx/"
  awk '/^FROM / { stage = "" } { stage = stage $0 "\n" } END { printf "%s", stage }' "$root/docker/Dockerfile" |
    sed -e 's#^FROM runtime-deps$#FROM localhost/seqrelay-runtime-deps:test#' \
        -e '/^COPY --from=build /{s#--from=build ##; s# /build/# build/#g}' >"$ctx/Dockerfile"
  if ! grep -qx 'FROM localhost/seqrelay-runtime-deps:test' "$ctx/Dockerfile" ||
     ! grep -qx 'COPY build/relay/seqrelay build/tools/seqsub build/tools/seqaudit /usr/local/bin/' "$ctx/Dockerfile" ||
     grep -q -- '--from=' "$ctx/Dockerfile"; then
    echo "test-docker: docker/Dockerfile's final stage is not the one --prebuilt rewrites:" >&2
    cat "$ctx/Dockerfile" >&2
    return 1
  fi
  build_stage runtime-deps && build localhost/seqrelay:test relay "$ctx"
}
if ((prepare)); then
  what="the three stand-ins and the relay image's package stage$([[ -n $prebuilt ]] && echo " (runtime-deps: with --prebuilt, no compiler)" || echo "s")"
  # Package installs (network, dpkg) beside the compile: at the lowest
  # priority, so that they take only the CPU the compile leaves. A build's
  # RUN steps are in a cgroup of their own, where nice does not reach: they
  # get the smallest CPU weight instead.
  renice -n 19 $$ >/dev/null
  build_opts=(--cpu-shares=2)
elif [[ -n $prebuilt ]]; then
  what="the relay image (the programs of $prebuilt) and the three stand-ins"
else
  what="the relay image and the three stand-ins"
fi
say "building $what"
build localhost/seqrelay-standin-mosquitto:test mosquitto "$root/docker/stand-ins/mosquitto" & b1=$!
build localhost/seqrelay-standin-mysql:test mysql "$root/docker/stand-ins/mysql" & b2=$!
# From docker/stand-ins/: it shares the mysql stand-in's entrypoint.
build localhost/seqrelay-standin-mariadb:test mariadb -f "$root/docker/stand-ins/mariadb/Dockerfile" \
  "$root/docker/stand-ins" & b3=$!
if ((prepare)); then
  # With --prebuilt the image compiles nothing: no compiler stage.
  { [[ -n $prebuilt ]] || build_stage build-deps; } && build_stage runtime-deps || die "image build failed"
elif [[ -n $prebuilt ]]; then
  build_prebuilt || die "image build failed"
else
  build localhost/seqrelay:test relay -f "$root/docker/Dockerfile" "$root" || die "image build failed"
fi
# Once reaped, their PIDs may be anyone's: forgotten, so that the cleanup
# never signals a process this script did not start.
wait "$b1" || { b1=""; die "stand-in build failed"; }
b1=""
wait "$b2" || { b2=""; die "stand-in build failed"; }
b2=""
wait "$b3" || { b3=""; die "stand-in build failed"; }
b3=""
if ((prepare)); then
  say "built $what"
  exit 0
fi
image_bytes=$(podman image inspect --format '{{.Size}}' localhost/seqrelay:test)
say "images built; relay image $((image_bytes / 1000000)) MB"
((images_only)) && exit 0

# compose.yaml publishes these on 127.0.0.1: a default another server
# holds (Debian's mosquitto package starts one on 1883 where systemd runs)
# gives way to a free port, passed to compose and the checks.
host_port() {  # default
  local p=$1
  while [[ -n $(ss -Hltn "sport = :$p") ]]; do p=$((p < 20000 ? p + 20000 : p + 1)); done
  [[ $p == "$1" ]] || say "port $1 is in use on this machine: the stacks publish $p instead" >&2
  echo "$p"
}
MQTT_HOST_PORT=$(host_port 1883) HTTP_HOST_PORT=$(host_port 8080) METRICS_HOST_PORT=$(host_port 9108)

# ---- the stack -------------------------------------------------------------------
pw() { /usr/bin/python3 -c 'import secrets; print(secrets.token_hex(12))'; }
cat > "$work/env" <<EOF
RELAY_MQTT_PASSWORD=$(pw)
ALICE_MQTT_PASSWORD=$(pw)
RELAY_DB_PASSWORD=$(pw)
MYSQL_ROOT_PASSWORD=$(pw)
MQTT_HOST_PORT=$MQTT_HOST_PORT
HTTP_HOST_PORT=$HTTP_HOST_PORT
METRICS_HOST_PORT=$METRICS_HOST_PORT
EOF
bob_pw=$(pw)
# shellcheck disable=SC1091
source "$work/env"

podman system service --time=0 "$DOCKER_HOST" >"$work/podman-service.log" 2>&1 &
api_pid=$!
api_up=0
for _ in $(seq 100); do
  [[ $(curl -s --unix-socket "$work/podman.sock" http://d/_ping 2>/dev/null) == OK ]] && { api_up=1; break; }
  kill -0 "$api_pid" 2>/dev/null || die "podman system service died: $(cat "$work/podman-service.log")"
  sleep 0.1
done
((api_up)) || die "podman system service did not answer on $work/podman.sock within 10 s: $(cat "$work/podman-service.log")"

# podman schedules healthchecks with systemd timers, and there is no systemd
# here: run each container's own HEALTHCHECK instead, once a second while
# it is not healthy (starting, or failing), every 5 s once it is (each run
# is a podman exec: with eight containers, running them all every second
# would slow everything else down). Each container's checks run beside the
# others', one at a time, each cut off after 30 s: podman 4.3 does not end
# a check at its timeout (a check that sleeps ran on past its 2 s until cut
# off), so one check that hangs would otherwise leave every container's
# health where it was, as a run in CI seemed to: "every service healthy"
# timed out after 180 s beside the cluster's forming nodes.
(
  declare -A last=() running=()
  trap 'kill $(jobs -p) 2>/dev/null || true; exit 0' TERM
  while :; do
    now=$(date +%s)
    # The checks still running (by this shell's own list: a PID of one that
    # ended may be another process's by now).
    under_way=" $(jobs -pr | tr '\n' ' ') "
    while read -r c status; do
      [[ -n ${running[$c]:-} && $under_way == *" ${running[$c]} "* ]] && continue
      [[ $status == *"(healthy)"* ]] && ((now - ${last[$c]:-0} < 5)) && continue
      timeout -k 5 30 podman healthcheck run "$c" </dev/null >/dev/null 2>&1 &
      running[$c]=$!
      last[$c]=$now
    done < <(podman ps --filter "$project_filter" --format '{{.ID}} {{.Status}}'
             podman ps --filter "$cluster_filter" --format '{{.ID}} {{.Status}}')
    sleep 1
  done
) &
health_pid=$!

source "$root/tests/deploy/stack_checks.sh"
source "$root/tests/deploy/cluster_checks.sh"
if ((single)); then
  # The cluster's database nodes form meanwhile (they publish no port).
  if ((cluster)); then cluster_db_start; fi
  run_stack_checks
  say "single-node stack: all checks passed"
fi
if ((cluster)); then
  t_cluster=$(date +%s)
  # Its ports are the cluster stack's too.
  if ((single)); then dc down -v -t 40 >/dev/null 2>&1 || die "docker-compose down -v of the single-node stack failed"; fi
  run_cluster_checks
  say "cluster stack: all checks passed, $(( $(date +%s) - t_cluster )) s after the single-node stack's"
fi
say "all container checks passed; relay image $((image_bytes / 1000000)) MB"
