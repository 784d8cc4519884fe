#!/bin/bash
# healthcheck.sh of the mariadb:11.4 stand-in (see ../README.md): the
# official image's /usr/local/bin/healthcheck.sh interface, written anew.
#
#   healthcheck.sh [--su-mysql | --su=USER] [client options] --TEST...
#
# Arguments are taken in order; each --TEST runs when it is read and a
# failure ends the script (exit 1, "healthcheck TEST failed"). If no
# --connect passed, the result is that of a final connect test.
#   --connect                    the server answers over TCP (an access-denied
#                                answer counts: the server is there) and has
#                                networking on (the entrypoint's temporary
#                                server has not)
#   --innodb_initialized         InnoDB is available
#   --innodb_buffer_pool_loaded  the buffer pool load at startup is complete
#   --galera_online              wsrep_local_state is 4 (Synced)
#   --galera_ready               wsrep_ready is ON
#   --replication                SHOW REPLICA STATUS satisfies the
#                                --replication_{io,sql,seconds_behind_master,
#                                sql_remaining_delay,name,all} set before it
#   --mariadbupgrade             no mariadb-upgrade holds its lock
# Client options: --no-defaults, --defaults-file=F, --defaults-extra-file=F,
# --defaults-group-suffix=S, --datadir=D. Without them the client reads
# DATADIR/.my-healthcheck.cnf (written by the entrypoint) when it exists.
# --su-mysql / --su=USER: run the rest as that Unix user (gosu), e.g. to log
# in as mysql@localhost by unix_socket.
set -eo pipefail

datadir=/var/lib/mysql
declare -A def=() repl=()
nodefaults=""
connect_status=""
[[ -f $datadir/.my-healthcheck.cnf ]] && def[extra_file]=$datadir/.my-healthcheck.cnf

client() {  # mariadb with the chosen defaults files; further arguments appended
  mariadb ${nodefaults:+--no-defaults} \
    ${def[file]:+--defaults-file=${def[file]}} \
    ${def[extra_file]:+--defaults-extra-file=${def[extra_file]}} \
    ${def[group_suffix]:+--defaults-group-suffix=${def[group_suffix]}} \
    --skip-ssl --skip-ssl-verify-server-cert "$@"
}
over_socket() { client --protocol socket -B --skip-column-names "$@"; }
status_var() { over_socket -e "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '$1'"; }

connect() {
  local answer
  answer=$(over_socket -e 'SELECT @@skip_networking' 2>/dev/null || true)
  if [[ $answer == 0 || $answer == 1 ]]; then
    connect_status=$answer
    return "$answer"
  fi
  answer=$(client -h localhost --protocol tcp -B --skip-column-names --skip-print-query-on-error \
           -e 'SELECT @@skip_networking' 2>&1 || true)
  case $answer in
    0 | "ERROR 1820 (HY000)"* | "ERROR 4151 (HY000):"* | "ERROR 1226 (42000)"* | ERROR\ 1[0-9][0-9][0-9]\ \(28000\):*)
      connect_status=0 ;;  # answered: networking on, or a refusal that proves the server is there
    1 | "ERROR 2002 (HY000):"*) connect_status=1 ;;
    *) echo "Unknown error $answer" >&2; connect_status=1 ;;
  esac
  return "$connect_status"
}
innodb_initialized() {
  [[ $(over_socket -e "SELECT 1 FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB' AND SUPPORT IN ('YES', 'DEFAULT', 'ENABLED')") == 1 ]]
}
innodb_buffer_pool_loaded() { [[ $(status_var Innodb_buffer_pool_load_status) == *"load completed"* ]]; }
galera_online() { [[ $(status_var WSREP_LOCAL_STATE) == 4 ]]; }
galera_ready() { [[ $(status_var WSREP_READY) == ON ]]; }
mariadbupgrade() {
  local f=$datadir/mariadb_upgrade_info
  [[ -r $f ]] || return 0
  flock --exclusive --nonblock 9 9<"$f"
}
replication() {
  local what="SHOW REPLICA STATUS"
  [[ -n ${repl[name]:-} ]] && what="SHOW REPLICA '${repl[name]}' STATUS"
  [[ -n ${repl[all]:-} ]] && what="SHOW ALL REPLICAS STATUS"
  local out name value
  out=$(client --protocol socket -e "$what\\G") || return 1
  [[ -n $out ]] || return 1
  while IFS=: read -r name value; do
    name=${name//[[:space:]]/} value=${value# }
    case $name in
      Slave_IO_Running) [[ -n ${repl[io]:-} && $value == No ]] && return 1 ;;
      Slave_SQL_Running) [[ -n ${repl[sql]:-} && $value == No ]] && return 1 ;;
      Seconds_Behind_Master)
        [[ -n ${repl[seconds_behind_master]:-} ]] &&
          { [[ $value == NULL ]] || ((repl[seconds_behind_master] < value)); } && return 1 ;;
      SQL_Remaining_Delay)
        [[ -n ${repl[sql_remaining_delay]:-} && $value != NULL ]] && ((repl[sql_remaining_delay] < value)) && return 1 ;;
    esac
  done <<<"$out"
  return 0
}
set_repl() {  # name, value
  repl[$1]=$2
  case $1 in
    seconds_behind_master | sql_remaining_delay)
      if [[ -z ${repl[io]:-} ]]; then repl[io]=1; echo "Forcing --replication_io=1, $1 requires IO thread to be running" >&2; fi ;;
    all) [[ -n ${repl[name]:-} ]] && { unset 'repl[name]'; echo "Option --replication_all incompatible with specified source --replication_name, clearing replication_name" >&2; } ;;
    name) [[ -n ${repl[all]:-} ]] && { unset 'repl[all]'; echo "Option --replication_name incompatible with --replication_all, clearing replication_all" >&2; } ;;
  esac
  return 0
}

if (($# == 0)); then echo "At least one argument required" >&2; exit 1; fi
while (($# > 0)); do
  test=""
  case $1 in
    --su=*) u=${1#*=}; shift; exec gosu "$u" "${BASH_SOURCE[0]}" "$@" ;;
    --su) u=$2; shift 2; exec gosu "$u" "${BASH_SOURCE[0]}" "$@" ;;
    --su-mysql) shift; exec gosu mysql "${BASH_SOURCE[0]}" "$@" ;;
    --replication_*=*) n=${1#--replication_}; n=${n%%=*}; set_repl "${n,,}" "${1#*=}" ;;
    --replication_*)
      n=${1#--replication_}
      if [[ ${2:0:2} == -- || $# -lt 2 ]]; then set_repl "${n,,}" 1; else set_repl "${n,,}" "$2"; shift; fi ;;
    --datadir=*) datadir=${1#*=} ;;
    --datadir) shift; datadir=$1 ;;
    --no-defaults) def=(); nodefaults=1 ;;
    --defaults-file=* | --defaults-extra-file=* | --defaults-group-suffix=*)
      n=${1#--defaults-}; n=${n%%=*}; def[${n//-/_}]=${1#*=}; nodefaults="" ;;
    --defaults-file | --defaults-extra-file | --defaults-group-suffix)
      n=${1#--defaults-}; n=${n//-/_}
      if [[ ${2:0:2} == -- || $# -lt 2 ]]; then def[$n]=""; else def[$n]=$2; shift; fi
      nodefaults="" ;;
    --*) test=${1#--} ;;
    *) echo "Unknown healthcheck option $1" >&2; exit 1 ;;
  esac
  if [[ -n $test ]]; then
    case $test in
      connect | innodb_initialized | innodb_buffer_pool_loaded | galera_online | galera_ready | replication | mariadbupgrade) ;;
      *) echo "healthcheck unknown option or test '$test'" >&2; exit 1 ;;
    esac
    "$test" || { echo "healthcheck $test failed" >&2; exit 1; }
  fi
  shift
done
if [[ $connect_status != 0 ]]; then
  connect
  exit $?
fi
