#!/bin/bash
# Entrypoint of the mysql:8.4 and mariadb:11.4 stand-ins (see ../README.md):
# on an empty data directory, initialise it the way the official image does
# from its environment variables and /docker-entrypoint-initdb.d; then exec
# the server as PID 1, so that `docker stop` / `docker compose restart`
# reach it with SIGTERM.
#   mysql:8.4 (the default): MYSQL_ROOT_PASSWORD, MYSQL_DATABASE,
#     MYSQL_USER, MYSQL_PASSWORD.
#   mariadb:11.4 (SEQRELAY_STANDIN=mariadb, set by its Dockerfile): the same
#     as MARIADB_*, each falling back to its MYSQL_* name as in the official
#     image, and MARIADB_ALLOW_EMPTY_ROOT_PASSWORD, MARIADB_RANDOM_ROOT_PASSWORD,
#     MARIADB_ROOT_HOST, MARIADB_MYSQL_LOCALHOST_USER/_GRANTS,
#     MARIADB_HEALTHCHECK_GRANTS, MARIADB_INITDB_SKIP_TZINFO, *_FILE; the
#     healthcheck users and $datadir/.my-healthcheck.cnf for healthcheck.sh;
#     Galera off (--wsrep_on=OFF) while initialising.
set -euo pipefail
log() { echo "stand-in entrypoint: $*" >&2; }
flavour=${SEQRELAY_STANDIN:-mysql}

# As in the official images: leading options are server options, and a
# server asked only for help or its version is run without any setup.
if [[ $# -eq 0 || "${1:0:1}" == "-" ]]; then set -- mysqld "$@"; fi
if [[ "$1" != "mysqld" && "$1" != "mariadbd" ]]; then exec "$@"; fi
shift
for a in "$@"; do
  case $a in -'?' | --help | --print-defaults | -V | --version) exec mariadbd "$@" ;; esac
done

datadir=/var/lib/mysql
sql_string() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }
sql_name() { printf '`%s`' "${1//\`/\`\`}"; }

if [[ $flavour == mariadb ]]; then
  # VAR or the contents of VAR_FILE (not both), as the official image reads them.
  file_env() {
    local var=$1 file_var=${1}_FILE
    if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then log "both $var and $file_var are set"; exit 1; fi
    if [[ -n ${!file_var:-} ]]; then printf -v "$var" '%s' "$(<"${!file_var}")"; fi
    export "$var=${!var:-}"
    unset "$file_var"
  }
  for v in ROOT_HOST DATABASE USER PASSWORD ROOT_PASSWORD; do
    file_env "MYSQL_$v"
    file_env "MARIADB_$v"
    m=MARIADB_$v my=MYSQL_$v
    [[ -n ${!m} ]] || export "$m=${!my}"
    export "$my=${!m}"
  done
  : "${MARIADB_ROOT_HOST:=%}"
  : "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:=${MYSQL_ALLOW_EMPTY_PASSWORD:-}}"
  : "${MARIADB_RANDOM_ROOT_PASSWORD:=${MYSQL_RANDOM_ROOT_PASSWORD:-}}"
  : "${MARIADB_INITDB_SKIP_TZINFO:=${MYSQL_INITDB_SKIP_TZINFO:-}}"
  ROOT_PASSWORD=$MARIADB_ROOT_PASSWORD DATABASE=$MARIADB_DATABASE DB_USER=$MARIADB_USER DB_PASSWORD=$MARIADB_PASSWORD
else
  ROOT_PASSWORD=${MYSQL_ROOT_PASSWORD:-} DATABASE=${MYSQL_DATABASE:-} DB_USER=${MYSQL_USER:-} DB_PASSWORD=${MYSQL_PASSWORD:-}
fi

# The healthcheck users of the official mariadb image, with a random
# password kept in $datadir/.my-healthcheck.cnf (read by healthcheck.sh).
healthcheck_users_sql() {
  local pw grant=${MARIADB_HEALTHCHECK_GRANTS:-USAGE} host port socket
  pw=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
  for host in 127.0.0.1 ::1 localhost; do
    printf "CREATE USER IF NOT EXISTS healthcheck@'%s' IDENTIFIED BY '%s';\n" "$host" "$pw"
    printf "SET PASSWORD FOR healthcheck@'%s' = PASSWORD('%s');\n" "$host" "$pw"
    printf "GRANT %s ON *.* TO healthcheck@'%s';\n" "$grant" "$host"
  done
  port=$(server_config port "$@")
  socket=$(server_config socket "$@")
  (umask 077; printf '[mariadb-client]\nport=%s\nsocket=%s\nuser=healthcheck\npassword=%s\nprotocol=tcp\n' \
     "$port" "$socket" "$pw" > "$datadir/.my-healthcheck.cnf")
  chown mysql:mysql "$datadir/.my-healthcheck.cnf"
}
# A server setting as the server would use it (config files and options).
server_config() {
  local name=$1
  shift
  mariadbd --user=mysql "$@" --verbose --help 2>/dev/null | awk -v n="$name" '$1 == n && /^[^ \t]/ {sub(/^[^ \t]+[ \t]+/, ""); print; exit}'
}

if [[ ! -d $datadir/mysql ]]; then
  if [[ $flavour == mariadb ]]; then
    if [[ -z $ROOT_PASSWORD && -z $MARIADB_ALLOW_EMPTY_ROOT_PASSWORD && -z $MARIADB_RANDOM_ROOT_PASSWORD ]]; then
      log "the database is uninitialised and no password option is given: set MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD or MARIADB_RANDOM_ROOT_PASSWORD"
      exit 1
    fi
    if [[ -n $MARIADB_RANDOM_ROOT_PASSWORD ]]; then
      ROOT_PASSWORD=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
      export MARIADB_ROOT_PASSWORD=$ROOT_PASSWORD MYSQL_ROOT_PASSWORD=$ROOT_PASSWORD
      log "GENERATED ROOT PASSWORD: $ROOT_PASSWORD"
    fi
  else
    : "${MYSQL_ROOT_PASSWORD:?the mysql stand-in needs MYSQL_ROOT_PASSWORD}"
  fi
  log "initialising $datadir"
  chown mysql:mysql "$datadir"
  # The server's own options go to the installer and the temporary server
  # too, as in the official images (the installer takes no whitespace).
  install_args=()
  for a in "$@"; do [[ $a =~ [[:space:]] ]] || install_args+=("$a"); done
  mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=normal \
    "${install_args[@]}" --skip-test-db --skip-log-bin >/dev/null
  sock=/run/mysqld/init.sock
  # Socket only while initialising: nothing (the healthcheck included) can
  # reach a half-made server over TCP. Galera off: nothing of this is
  # replicated (a joiner gets the result by state transfer).
  mariadbd --user=mysql --datadir="$datadir" "$@" --skip-networking --socket="$sock" \
    --loose-wsrep_on=OFF --default-time-zone=SYSTEM --loose-innodb_buffer_pool_load_at_startup=0 &
  pid=$!
  for _ in $(seq 300); do
    mariadb-admin --socket="$sock" -uroot ping >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { log "the server died while initialising"; exit 1; }
    sleep 0.1
  done
  client=(mariadb --socket="$sock" -uroot)
  if [[ $flavour == mariadb && -z $MARIADB_INITDB_SKIP_TZINFO ]]; then
    mariadb-tzinfo-to-sql --skip-write-binlog /usr/share/zoneinfo 2>/dev/null | "${client[@]}" mysql
  fi
  pw=$(sql_string "$ROOT_PASSWORD")
  # Root as in the official images: localhost and '%', both with the
  # password. mariadb-install-db also makes root@127.0.0.1, root@::1 and
  # root@<hostname> without one; over TCP they would win over root@'%'.
  sql=$("${client[@]}" -N -B -e "SELECT CONCAT('DROP USER ', QUOTE(User), '@', QUOTE(Host), ';')
                                 FROM mysql.user WHERE User = 'root' AND Host NOT IN ('localhost', '%')")
  if [[ $flavour == mariadb ]]; then
    sql+="SET PASSWORD FOR 'root'@'localhost' = PASSWORD($pw);"
    if [[ -n $MARIADB_ROOT_HOST && $MARIADB_ROOT_HOST != localhost ]]; then
      h=$(sql_string "$MARIADB_ROOT_HOST")
      sql+="CREATE USER 'root'@$h IDENTIFIED BY $pw;
           GRANT ALL ON *.* TO 'root'@$h WITH GRANT OPTION;
           GRANT PROXY ON ''@'%' TO 'root'@$h WITH GRANT OPTION;"
    fi
    if [[ -n ${MARIADB_MYSQL_LOCALHOST_USER:-} ]]; then
      sql+="CREATE USER mysql@localhost IDENTIFIED VIA unix_socket;"
      [[ -n ${MARIADB_MYSQL_LOCALHOST_GRANTS:-} ]] && sql+="GRANT $MARIADB_MYSQL_LOCALHOST_GRANTS ON *.* TO mysql@localhost;"
    fi
    sql+=$(healthcheck_users_sql "$@")
  else
    sql+="ALTER USER 'root'@'localhost' IDENTIFIED BY $pw;
         CREATE USER 'root'@'%' IDENTIFIED BY $pw;
         GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
  fi
  if [[ -n "$DATABASE" ]]; then
    sql+="CREATE DATABASE IF NOT EXISTS $(sql_name "$DATABASE");"
  fi
  if [[ -n "$DB_USER" && -n "$DB_PASSWORD" ]]; then
    sql+="CREATE USER $(sql_string "$DB_USER")@'%' IDENTIFIED BY $(sql_string "$DB_PASSWORD");"
    if [[ -n "$DATABASE" ]]; then
      # mariadb escapes the LIKE wildcard '_' in the name, so that the grant
      # is for that database only.
      db=$DATABASE
      [[ $flavour == mariadb ]] && db=${db//_/\\_}
      sql+="GRANT ALL ON $(sql_name "$db").* TO $(sql_string "$DB_USER")@'%';"
    fi
  fi
  "${client[@]}" -e "$sql"
  if [[ -n $ROOT_PASSWORD ]]; then client+=(-p"$ROOT_PASSWORD"); fi
  client+=(${DATABASE:+"$DATABASE"})
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)
        if [[ $flavour == mariadb && -x $f ]]; then log "running $f"; "$f"; else log "running $f"; . "$f"; fi ;;
      *.sql) log "running $f"; "${client[@]}" < "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | "${client[@]}" ;;
      *.sql.xz) log "running $f"; xzcat "$f" | "${client[@]}" ;;
      *.sql.zst) log "running $f"; zstd -dc "$f" | "${client[@]}" ;;
      *) [[ -e $f ]] && log "ignoring $f" ;;
    esac
  done
  mariadb-admin --socket="$sock" -uroot ${ROOT_PASSWORD:+-p"$ROOT_PASSWORD"} shutdown
  wait "$pid"
  log "initialised"
fi
exec mariadbd --user=mysql --datadir="$datadir" "$@"
