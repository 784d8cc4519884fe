"""Throwaway MariaDB, mosquitto and relay for the tests (the Python twin of
tools/harness/servers.cc and clients/js/test/servers.js): a temp folder, free
loopback ports, readiness polled (never a fixed sleep), stopped by PID.

The relay binary: $SEQTEST_RELAY_BINARY, else <repo>/build/relay/seqrelay.
Deadlines scale with $SEQTEST_TIME_FACTOR.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
TIME_FACTOR = float(os.environ.get("SEQTEST_TIME_FACTOR", "1"))
DB_PASSWORD = "db-secret"


def relay_binary() -> str:
    path = os.environ.get("SEQTEST_RELAY_BINARY", str(REPO / "build/relay/seqrelay"))
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"relay binary {path} not found: build it, or set SEQTEST_RELAY_BINARY")
    return path


def find_binary(name: str) -> str:
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    raise RuntimeError(f"{name} not found: install it (tools/test-clients.sh does)")


_given_ports: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago: random, between
    10000 and 19999 as the C++ harness picks them (FreePort in
    tools/harness/process.cc), below the ephemeral range. A port the kernel
    picks (bind to 0) is in that range, and stays unbound for the seconds a
    database takes to start: an outgoing connection of the C++ suite,
    running beside, could take it meanwhile."""
    for _ in range(1000):
        port = random.randint(10000, 19999)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise RuntimeError("no free TCP port on 127.0.0.1 between 10000 and 19999")


def port_accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition, what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline * TIME_FACTOR
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


class Server:
    def __init__(self, name: str, argv: list, log: Path, env: dict | None = None):
        self.name, self.log_path = name, log
        # The relay reads every SEQRELAY_* variable as an option (and refuses
        # unknown ones): it gets only those given.
        base = {k: v for k, v in os.environ.items() if not k.startswith("SEQRELAY_")}
        with open(log, "ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**base, **(env or {})})

    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self, check, what: str, deadline: float) -> None:
        wait_for(lambda: not self.running() or check(), what, deadline)
        if not self.running():
            raise RuntimeError(f"{self.name} exited:\n{tail(self.log_path)}")

    def stop(self, grace: float = 30.0) -> None:
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace * TIME_FACTOR)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class TestServers:
    def __init__(self, relay_args: list | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="seqpy-", dir="/tmp"))  # short: socket path < 108 bytes
        self.db_port, self.mqtt_port = free_port(), free_port()
        self.socket = str(self.dir / "my.sock")
        self.db = self.broker = self.relay = None
        try:
            self._start(relay_args or [])
        except BaseException as e:
            logs = self.logs()
            self.stop()
            raise RuntimeError(f"{e}\n{logs}") from e

    def _start(self, relay_args: list) -> None:
        relay = relay_binary()
        (self.dir / "mosquitto.conf").write_text(
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            "set_tcp_nodelay true\nmax_queued_messages 0\nlog_dest stderr\n")
        self.broker = Server("mosquitto", [find_binary("mosquitto"), "-c", str(self.dir / "mosquitto.conf")],
                             self.dir / "mosquitto.log")
        # Temp files of its own: installs that run side by side collide in /tmp.
        (self.dir / "tmp").mkdir(exist_ok=True)
        subprocess.run([find_binary("mariadb-install-db"), "--no-defaults", "--user=root", f"--datadir={self.dir}/db",
                        f"--tmpdir={self.dir}/tmp", "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True)
        self.db = Server("mariadbd", [find_binary("mariadbd"), "--no-defaults", "--user=root",
                                      f"--datadir={self.dir}/db", f"--tmpdir={self.dir}/tmp",
                                      f"--socket={self.socket}", f"--port={self.db_port}",
                                      "--bind-address=127.0.0.1", "--skip-name-resolve",
                                      "--innodb-flush-log-at-trx-commit=2"], self.dir / "mariadb.log")
        self.broker.ready(lambda: port_accepts(self.mqtt_port), "mosquitto to open its port", 20)
        self.db.ready(lambda: port_accepts(self.db_port), "mariadbd to open its port", 60)
        self.sql(f"CREATE DATABASE seqrelay; CREATE USER 'seqrelay'@'%' IDENTIFIED BY '{DB_PASSWORD}'; "
                 "GRANT ALL ON seqrelay.* TO 'seqrelay'@'%';")
        self.relay = Server("seqrelay", [relay, f"--mqtt-port={self.mqtt_port}", f"--db-port={self.db_port}",
                                         "--db-user=seqrelay", "--db-name=seqrelay", "--stats-interval=0",
                                         "--shutdown-timeout=10", f"--journal-dir={self.dir}/journal", *relay_args],
                            self.dir / "relay.log", {"SEQRELAY_DB_PASSWORD": DB_PASSWORD})
        self.relay.ready(lambda: "intake: subscribed" in self.relay.log(), "the relay to subscribe", 30)

    def sql(self, text: str) -> str:
        return subprocess.run([find_binary("mariadb"), "--no-defaults", "-S", self.socket, "-uroot", "-N", "-B",
                               "-e", text], check=True, capture_output=True, text=True).stdout

    def last_seq(self, topic: str) -> int:
        return int(self.sql(f"SELECT COALESCE(MAX(SEQ), 0) FROM seqrelay.MSG WHERE ID = '{topic}'").strip())

    def logs(self) -> str:
        return "\n".join(f"---- {n} log (tail) ----\n{tail(self.dir / f'{n}.log')}"
                         for n in ("relay", "mosquitto", "mariadb"))

    def stop(self) -> None:
        for server in (self.relay, self.broker, self.db):
            if server:
                server.stop(60 if server is self.db else 30)
        if not os.environ.get("SEQTEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


# mosquitto's dynamic security plugin, as Debian and Ubuntu install it.
DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


class DynsecBroker:
    """A mosquitto of its own (no relay, no database) with the dynamic security plugin and
    anonymous clients allowed: an anonymous client has no role, so every SUBSCRIBE of one is
    refused (SUBACK 128), as by a broker whose ACL does not let a user read a topic. (An acl_file
    never refuses a SUBSCRIBE: it grants it and delivers nothing.) stop() stops it by PID and
    removes its folder."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="seqpy-dynsec-", dir="/tmp"))
        self.port = free_port()
        self.broker = None
        try:
            subprocess.run([find_binary("mosquitto_ctrl"), "dynsec", "init", str(self.dir / "dynsec.json"), "admin",
                            "admin-secret"], check=True, capture_output=True)
            # As root, mosquitto would drop to 'mosquitto' and could not read the files.
            user = "user root\n" if os.getuid() == 0 else ""
            (self.dir / "mosquitto.conf").write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\nplugin {DYNSEC_PLUGIN}\n"
                f"plugin_opt_config_file {self.dir / 'dynsec.json'}\n{user}log_dest stderr\nlog_type all\n")
            self.broker = Server("mosquitto", [find_binary("mosquitto"), "-c", str(self.dir / "mosquitto.conf")],
                                 self.dir / "mosquitto.log")
            self.broker.ready(lambda: port_accepts(self.port), "mosquitto (dynamic security) to open its port", 20)
        except BaseException as e:
            logs = self.logs()
            self.stop()
            raise RuntimeError(f"{e}\n{logs}") from e

    def logs(self) -> str:
        return f"---- mosquitto log (tail) ----\n{tail(self.dir / 'mosquitto.log')}"

    def stop(self) -> None:
        if self.broker:
            self.broker.stop()
        if not os.environ.get("SEQTEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
