#!/bin/bash
# Entrypoint of the mysql:8.4 stand-in (see ../README.md): on an empty data
# directory, initialise it the way the official image does from
# MYSQL_ROOT_PASSWORD, MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD and
# /docker-entrypoint-initdb.d; then exec the server as PID 1, so that
# `docker stop` / `docker compose restart` reach it with SIGTERM.
set -euo pipefail
log() { echo "stand-in entrypoint: $*" >&2; }

# As in the official image: leading options are server options.
if [[ $# -eq 0 || "${1:0:1}" == "-" ]]; then set -- mysqld "$@"; fi
if [[ "$1" != "mysqld" && "$1" != "mariadbd" ]]; then exec "$@"; fi
shift

datadir=/var/lib/mysql
sql_string() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }
sql_name() { printf '`%s`' "${1//\`/\`\`}"; }

if [[ ! -d $datadir/mysql ]]; then
  : "${MYSQL_ROOT_PASSWORD:?the mysql stand-in needs MYSQL_ROOT_PASSWORD}"
  log "initialising $datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db >/dev/null
  sock=/run/mysqld/init.sock
  # Socket only while initialising: nothing (the healthcheck included) can
  # reach a half-made server over TCP.
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$sock" &
  pid=$!
  for _ in $(seq 300); do
    mariadb-admin --socket="$sock" -uroot ping >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { log "the server died while initialising"; exit 1; }
    sleep 0.1
  done
  client=(mariadb --socket="$sock" -uroot)
  pw=$(sql_string "$MYSQL_ROOT_PASSWORD")
  # Root as in the official image: localhost and '%', both with the
  # password. mariadb-install-db also makes root@127.0.0.1, root@::1 and
  # root@<hostname> without one; over TCP they would win over root@'%'.
  sql=$("${client[@]}" -N -B -e "SELECT CONCAT('DROP USER ', QUOTE(User), '@', QUOTE(Host), ';')
                                 FROM mysql.user WHERE User = 'root' AND Host NOT IN ('localhost', '%')")
  sql+="ALTER USER 'root'@'localhost' IDENTIFIED BY $pw;
       CREATE USER 'root'@'%' IDENTIFIED BY $pw;
       GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
  if [[ -n "${MYSQL_DATABASE:-}" ]]; then
    sql+="CREATE DATABASE IF NOT EXISTS $(sql_name "$MYSQL_DATABASE");"
  fi
  if [[ -n "${MYSQL_USER:-}" && -n "${MYSQL_PASSWORD:-}" ]]; then
    sql+="CREATE USER $(sql_string "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
    if [[ -n "${MYSQL_DATABASE:-}" ]]; then
      sql+="GRANT ALL ON $(sql_name "$MYSQL_DATABASE").* TO $(sql_string "$MYSQL_USER")@'%';"
    fi
  fi
  "${client[@]}" -e "$sql"
  client+=(-p"$MYSQL_ROOT_PASSWORD" ${MYSQL_DATABASE:+"$MYSQL_DATABASE"})
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh) log "running $f"; . "$f" ;;
      *.sql) log "running $f"; "${client[@]}" < "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | "${client[@]}" ;;
      *) [[ -e $f ]] && log "ignoring $f" ;;
    esac
  done
  mariadb-admin --socket="$sock" -uroot -p"$MYSQL_ROOT_PASSWORD" shutdown
  wait "$pid"
  log "initialised"
fi
exec mariadbd --user=mysql --datadir="$datadir" "$@"
