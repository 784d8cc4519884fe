// Throwaway servers for the client tests, the JavaScript twin of
// tools/harness/servers.cc: MariaDB (mariadb-install-db + mariadbd),
// mosquitto and the relay, each in a temp folder on free loopback ports,
// ready when polled ready (never a fixed sleep), stopped by PID.
//
//   const servers = await TestServers.start();              // anonymous TCP listener
//   const servers = await TestServers.start({ shipped: {...} }); // docker/mosquitto files, with users
//   ...
//   await servers.stop();
//
// The relay binary: $SEQTEST_RELAY_BINARY, else <repo>/build/relay/seqrelay.
// Deadlines scale with $SEQTEST_TIME_FACTOR (sanitizer builds).
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');
export const TIME_FACTOR = Number(process.env.SEQTEST_TIME_FACTOR ?? 1);
const RELAY_PASSWORD = 'relay-secret';
const DB_PASSWORD = 'db-secret';

export function relayBinary() {
  const path = process.env.SEQTEST_RELAY_BINARY ?? `${REPO}/build/relay/seqrelay`;
  if (!existsSync(path)) throw new Error(`relay binary ${path} not found: build it, or set SEQTEST_RELAY_BINARY`);
  return path;
}

function findBinary(name) {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
    if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  throw new Error(`${name} not found: install it (tools/test-clients.sh does)`);
}

// Ports given out by this process: each once, as the C++ harness does.
const givenPorts = new Set();

function bindable(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago: random, between
 * 10000 and 19999 as the C++ harness picks them (FreePort in
 * tools/harness/process.cc), below the ephemeral range. A port the kernel
 * picks (listen on 0) is in that range, and stays unbound for the seconds
 * a database takes to start: an outgoing connection of the C++ suite,
 * running beside, could take it meanwhile.
 */
export async function freePort() {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = 10000 + Math.floor(Math.random() * 10000);
    if (givenPorts.has(port) || !(await bindable(port))) continue;
    givenPorts.add(port);
    return port;
  }
  throw new Error('no free TCP port on 127.0.0.1 between 10000 and 19999');
}

function portAccepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls `condition` (sync or async) every 20 ms until it holds; throws `what` after the deadline. */
export async function waitFor(condition, what, deadlineMs = 10000) {
  const end = Date.now() + deadlineMs * TIME_FACTOR;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function tail(path, lines = 40) {
  if (!existsSync(path)) return '(no log)\n';
  return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
}

// Every server process this module started, so that a crashing test run
// still stops them (by PID).
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

class Server {
  constructor(name, argv, logPath, env = {}) {
    this.name = name;
    this.logPath = logPath;
    const log = openSync(logPath, 'a');
    // The relay reads every SEQRELAY_* variable as an option and refuses
    // unknown ones: it gets only those given here.
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SEQRELAY_')));
    this.child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', log, log], env: { ...inherited, ...env } });
    closeSync(log);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.exitCode = null;
    this.exited.then((e) => {
      this.exitCode = e;
      running.delete(this.child);
    });
    running.add(this.child);
  }

  get running() {
    return this.exitCode === null;
  }

  log() {
    return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs = 30000) {
    if (!this.running) return this.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs * TIME_FACTOR);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  async ready(check, what, deadlineMs) {
    await waitFor(async () => !this.running || (await check()), what, deadlineMs);
    if (!this.running) throw new Error(`${this.name} exited:\n${tail(this.logPath)}`);
  }
}

export class TestServers {
  /**
   * options.shipped: run mosquitto from docker/mosquitto (its mosquitto.conf
   *   and acl, ports and paths rewritten), with a WebSocket listener serving
   *   options.shipped.httpDir; users: {name: password}; extraAcl: text
   *   appended to the acl.
   * options.relayArgs: more relay options.
   */
  static async start(options = {}) {
    const s = new TestServers();
    try {
      await s.#start(options);
    } catch (error) {
      error.message += `\n${s.logs()}`;
      await s.stop();
      throw error;
    }
    return s;
  }

  async #start(options) {
    this.dir = mkdtempSync('/tmp/seqjs-'); // short: a unix socket path must stay under 108 bytes
    this.dbPort = await freePort();
    this.mqttPort = await freePort();
    const relay = relayBinary();
    if (options.shipped) {
      this.relayPort = await freePort();
      this.wsPort = await freePort();
    }
    // The database and the broker start side by side.
    await Promise.all([this.#startDatabase(), this.#startBroker(options.shipped)]);
    this.relayArgs = [
      relay,
      `--mqtt-port=${this.relayPort ?? this.mqttPort}`,
      `--db-port=${this.dbPort}`,
      '--db-user=seqrelay',
      '--db-name=seqrelay',
      '--mqtt-client-id=seqrelay',
      '--stats-interval=0',
      '--shutdown-timeout=10',
      `--journal-dir=${this.dir}/journal`,
      ...(options.shipped ? ['--mqtt-user=seqrelay', `--acl-file=${this.dir}/acl`] : []),
      ...(options.relayArgs ?? []),
    ];
    await this.startRelay();
  }

  async #startDatabase() {
    // Temp files of its own: installs that run side by side collide in /tmp.
    mkdirSync(`${this.dir}/tmp`, { recursive: true });
    execFileSync(findBinary('mariadb-install-db'), [
      '--no-defaults', '--user=root', `--datadir=${this.dir}/db`, `--tmpdir=${this.dir}/tmp`,
      '--auth-root-authentication-method=normal', '--skip-test-db',
    ], { stdio: 'pipe' });
    this.socket = `${this.dir}/my.sock`;
    this.db = new Server('mariadbd', [
      findBinary('mariadbd'), '--no-defaults', '--user=root', `--datadir=${this.dir}/db`, `--tmpdir=${this.dir}/tmp`,
      `--socket=${this.socket}`, `--port=${this.dbPort}`, '--bind-address=127.0.0.1', '--skip-name-resolve',
      // Durability does not matter for these tests; speed does.
      '--innodb-flush-log-at-trx-commit=2',
    ], `${this.dir}/mariadb.log`);
    await this.db.ready(() => portAccepts(this.dbPort), 'mariadbd to open its port', 60000);
    this.sql(`CREATE DATABASE seqrelay; CREATE USER 'seqrelay'@'%' IDENTIFIED BY '${DB_PASSWORD}';
              GRANT ALL ON seqrelay.* TO 'seqrelay'@'%';`);
  }

  /** Runs SQL as root over the socket; returns the rows as tab-separated text. */
  sql(text) {
    return execFileSync(findBinary('mariadb'), ['--no-defaults', '-S', this.socket, '-uroot', '-N', '-B', '-e', text], {
      encoding: 'utf8',
    });
  }

  async #startBroker(shipped) {
    const conf = shipped ? this.#shippedConf(shipped) : this.#plainConf();
    writeFileSync(`${this.dir}/mosquitto.conf`, conf);
    this.broker = new Server('mosquitto', [findBinary('mosquitto'), '-c', `${this.dir}/mosquitto.conf`], `${this.dir}/mosquitto.log`);
    const ports = [this.mqttPort, this.relayPort, this.wsPort].filter(Boolean);
    await this.broker.ready(async () => (await Promise.all(ports.map(portAccepts))).every(Boolean), 'mosquitto to open its ports');
  }

  #plainConf() {
    return [
      `listener ${this.mqttPort} 127.0.0.1`, 'allow_anonymous true', 'user root', 'set_tcp_nodelay true',
      'max_queued_messages 0', 'log_dest stderr', 'log_type all', '',
    ].join('\n');
  }

  // docker/mosquitto/mosquitto.conf and acl as shipped. Every line rewritten
  // must be in the shipped file, so this follows the file and fails if it
  // changes under it (as tests/integration/deploy_test.cc does).
  #shippedConf(shipped) {
    const docker = `${REPO}/docker/mosquitto`;
    let conf = readFileSync(`${docker}/mosquitto.conf`, 'utf8');
    const rewrite = (from, to) => {
      if (!conf.includes(from)) throw new Error(`shipped mosquitto.conf lacks '${from.trim()}'`);
      conf = conf.replace(from, to);
    };
    rewrite('listener 1883\n', `listener ${this.mqttPort} 127.0.0.1\n`);
    rewrite('listener 1884\n', `listener ${this.relayPort} 127.0.0.1\n`);
    rewrite('listener 8080\n', `listener ${this.wsPort} 127.0.0.1\n`);
    rewrite('http_dir /mosquitto/www\n', `http_dir ${shipped.httpDir}\n`);
    rewrite('persistence_location /mosquitto/data/\n', `persistence_location ${this.dir}/\n`);
    while (conf.includes('password_file /mosquitto/data/passwords\n')) {
      rewrite('password_file /mosquitto/data/passwords\n', `password_file ${this.dir}/passwords\n`);
    }
    rewrite('password_file /mosquitto/data/relay-passwords\n', `password_file ${this.dir}/relay-passwords\n`);
    while (conf.includes('acl_file /mosquitto/config/acl\n')) {
      rewrite('acl_file /mosquitto/config/acl\n', `acl_file ${this.dir}/acl\n`);
    }
    if (process.getuid?.() === 0) conf += '\nuser root\n'; // else mosquitto drops to 'mosquitto' and cannot read the files
    writeFileSync(`${this.dir}/acl`, `${readFileSync(`${docker}/acl`, 'utf8')}\n${shipped.extraAcl ?? ''}`);
    const passwd = findBinary('mosquitto_passwd');
    const addUser = (file, user, password) => {
      if (!existsSync(file)) writeFileSync(file, '');
      execFileSync(passwd, ['-b', file, user, password], { stdio: 'pipe' });
    };
    addUser(`${this.dir}/relay-passwords`, 'seqrelay', RELAY_PASSWORD);
    for (const [user, password] of Object.entries(shipped.users ?? {})) addUser(`${this.dir}/passwords`, user, password);
    return conf;
  }

  /** Starts the relay; ready once its intake subscription is acknowledged. */
  async startRelay() {
    const before = this.relay?.log().length ?? 0;
    // The broker's password only with its user (the relay refuses one
    // without the other).
    const mqttLogin = this.relayArgs.includes('--mqtt-user=seqrelay') ? { SEQRELAY_MQTT_PASSWORD: RELAY_PASSWORD } : {};
    this.relay = new Server('seqrelay', this.relayArgs, `${this.dir}/relay.log`, {
      SEQRELAY_DB_PASSWORD: DB_PASSWORD,
      ...mqttLogin,
    });
    await this.relay.ready(() => this.relay.log().indexOf('intake: subscribed', before) >= 0, 'the relay to subscribe', 30000);
  }

  async stopRelay() {
    return this.relay?.stop();
  }

  logs() {
    if (!this.dir) return '';
    return ['relay', 'mosquitto', 'mariadb']
      .map((n) => `---- ${n} log (tail) ----\n${tail(`${this.dir}/${n}.log`)}`)
      .join('\n');
  }

  /** Stops relay, broker, database (in that order), by PID; removes the folder unless SEQTEST_KEEP is set. */
  async stop() {
    await this.relay?.stop();
    await this.broker?.stop();
    await this.db?.stop(60000);
    if (this.dir && !process.env.SEQTEST_KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** mosquitto's dynamic security plugin, as Debian and Ubuntu install it. */
export const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';

/**
 * A mosquitto of its own (no relay, no database) with the dynamic security
 * plugin and anonymous clients allowed: an anonymous client has no role, so
 * every SUBSCRIBE of one is refused (SUBACK 128), as a broker whose ACL does
 * not let a user read a topic. (An acl_file never refuses a SUBSCRIBE: it
 * grants it and delivers nothing.)
 *
 *   const broker = await DynsecBroker.start();  // broker.port
 *   ...
 *   await broker.stop();                        // by PID; its folder removed
 */
export class DynsecBroker {
  static async start() {
    const b = new DynsecBroker();
    try {
      b.dir = mkdtempSync('/tmp/seqjs-dynsec-');
      b.port = await freePort();
      execFileSync(findBinary('mosquitto_ctrl'), ['dynsec', 'init', `${b.dir}/dynsec.json`, 'admin', 'admin-secret'], { stdio: 'pipe' });
      writeFileSync(`${b.dir}/mosquitto.conf`, [
        `listener ${b.port} 127.0.0.1`, 'allow_anonymous true', `plugin ${DYNSEC_PLUGIN}`,
        `plugin_opt_config_file ${b.dir}/dynsec.json`,
        // Else mosquitto drops to 'mosquitto' and cannot read the files.
        ...(process.getuid?.() === 0 ? ['user root'] : []),
        'log_dest stderr', 'log_type all', '',
      ].join('\n'));
      b.broker = new Server('mosquitto', [findBinary('mosquitto'), '-c', `${b.dir}/mosquitto.conf`], `${b.dir}/mosquitto.log`);
      await b.broker.ready(() => portAccepts(b.port), 'mosquitto (dynamic security) to open its port');
    } catch (error) {
      error.message += `\n${b.logs()}`;
      await b.stop();
      throw error;
    }
    return b;
  }

  logs() {
    return this.dir ? `---- mosquitto log (tail) ----\n${tail(`${this.dir}/mosquitto.log`)}` : '';
  }

  /** Stops the broker by PID; removes the folder unless SEQTEST_KEEP is set. */
  async stop() {
    await this.broker?.stop();
    if (this.dir && !process.env.SEQTEST_KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * test() with the servers' logs appended to a failure's message, as the C++
 * fixtures print them.
 */
export function withLogs(servers, fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (error) {
      if (error && typeof error === 'object') error.message = `${error.message}\n${servers().logs()}`;
      throw error;
    }
  };
}
