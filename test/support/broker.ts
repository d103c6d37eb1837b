// A private MQTT broker for tests: Mosquitto 2 (MQTT 5) when its binary is installed, else an
// in-process aedes (MQTT 3.1.1 only). Each broker gets a free 127.0.0.1 port and its own temp
// directory; the system broker on 1883 is never used. `ZTEDGE_TEST_BROKER=aedes` forces the
// fallback so both paths can be exercised on a machine that has Mosquitto.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Aedes, type AedesOptions } from 'aedes';
import { freePort } from './free-port.js';

export interface BrokerUser {
  username: string;
  password: string;
}

/** One ACL line: `user` absent means anonymous clients. Anything not granted is denied. */
export interface BrokerAclRule {
  user?: string;
  access: 'read' | 'write' | 'readwrite';
  /** A topic filter (`+` and `#` allowed). */
  topic: string;
}

export interface StartBrokerOptions {
  /** Force a broker; by default Mosquitto when installed (and not overridden by the env). */
  kind?: 'mosquitto' | 'aedes';
  /** When given, only these users may connect (anonymous clients are refused). */
  users?: BrokerUser[];
  /** When given, topics are denied unless a rule grants them. */
  acl?: BrokerAclRule[];
  /** Keep retained messages, sessions and queued QoS 1 messages across restart(). */
  persistence?: boolean;
  /** Serve mqtts:// with a throwaway CA; clients must present a certificate it signed. */
  tls?: boolean;
  /**
   * What Mosquitto writes to its log file (removed with the broker). 'quiet' (the default):
   * errors and warnings, enough to say why a start failed. 'all': every packet, for debugging;
   * it costs the broker about as much CPU as routing, so benchmarks must never use it.
   */
  log?: 'quiet' | 'all';
  /**
   * Mosquitto's max_queued_messages: messages queued per client beyond those in flight; more are
   * dropped, QoS 1 included (Mosquitto's default is 1000). Not applied by aedes.
   */
  maxQueuedMessages?: number;
}

/** Files a TLS client needs to talk to a `tls: true` broker. */
export interface TestTlsFiles {
  ca: string;
  clientCert: string;
  clientKey: string;
}

export interface TestBroker {
  url: string;
  port: number;
  kind: 'mosquitto' | 'aedes';
  protocolVersion: 5 | 4;
  tlsFiles?: TestTlsFiles;
  /** The Mosquitto process while it runs (for CPU accounting); undefined for aedes. */
  readonly pid: number | undefined;
  /** Graceful stop; the broker cannot be restarted afterwards. */
  stop(): Promise<void>;
  /** Graceful stop (persisting state when asked) then start again on the same port. Also starts a killed broker. */
  restart(): Promise<void>;
  /** Abrupt death: SIGKILL for Mosquitto, sockets destroyed for aedes. */
  kill(): Promise<void>;
}

const START_TIMEOUT_MS = 10_000;
/** Which brokers this test file has announced (each once). */
const announced = new Set<TestBroker['kind']>();

export async function startBroker(opts: StartBrokerOptions = {}): Promise<TestBroker> {
  const wantAedes = opts.kind === 'aedes' || (opts.kind === undefined && process.env.ZTEDGE_TEST_BROKER === 'aedes');
  const mosquitto = wantAedes ? null : findMosquitto();
  if (opts.kind === 'mosquitto' && !mosquitto) throw new Error('mosquitto is not installed');
  const broker = mosquitto ? await startMosquitto(mosquitto, opts) : await startAedes(opts);
  if (!announced.has(broker.kind)) {
    announced.add(broker.kind);
    const label =
      broker.kind === 'mosquitto'
        ? `mosquitto ${mosquitto!.version} (MQTT 5) on 127.0.0.1:${broker.port}`
        : `aedes (MQTT 3.1.1 fallback) on 127.0.0.1:${broker.port}`;
    console.log(`[broker] ${label}`);
  }
  return broker;
}

interface MosquittoInstall {
  broker: string;
  passwd: string | null;
  version: string;
}

const SBIN_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin', '/opt/homebrew/sbin'];

/** Mosquitto lives in sbin, which is often missing from a non-root PATH. */
function findMosquitto(): MosquittoInstall | null {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...SBIN_DIRS];
  const find = (name: string) => dirs.map((d) => path.join(d, name)).find((p) => isExecutable(p)) ?? null;
  const broker = find('mosquitto');
  if (!broker) return null;
  const help = spawnSync(broker, ['-h'], { encoding: 'utf8' });
  const version = /mosquitto version (\S+)/.exec(`${help.stdout}${help.stderr}`)?.[1] ?? 'unknown';
  return { broker, passwd: find('mosquitto_passwd'), version };
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}


function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-broker-'));
}

/**
 * Mosquitto runs under a small shell that kills it as soon as this process is gone, however
 * it goes (vitest may end a worker with a signal, which skips 'exit' handlers): the shell's
 * stdin is a pipe from us, and EOF on it means we died. The shell prints Mosquitto's pid, then
 * waits for it, so the shell's exit is Mosquitto's exit.
 */
const WATCHDOG = 'exec 3<&0; "$0" -c "$1" </dev/null & pid=$!; echo "$pid"; (read _ <&3; kill -KILL "$pid" 2>/dev/null) & wait "$pid"';

interface WatchedBroker {
  shell: ChildProcess;
  pid: number;
}

async function startMosquitto(install: MosquittoInstall, opts: StartBrokerOptions): Promise<TestBroker> {
  const dir = makeTempDir();
  const port = await freePort();
  const tlsFiles = opts.tls ? makeTlsFiles(dir) : undefined;
  const conf = path.join(dir, 'mosquitto.conf');
  const logFile = path.join(dir, 'mosquitto.log');
  const lines = [
    `listener ${port} 127.0.0.1`,
    `log_dest file ${logFile}`,
    ...(opts.log === 'all' ? ['log_type all'] : ['log_type error', 'log_type warning', 'connection_messages false']),
    'log_timestamp_format %H:%M:%S',
    // Without it, Nagle's algorithm holds a small packet back until the client's delayed TCP ack
    // (up to 40 ms): a result would wait behind the PUBACK sent just before it.
    'set_tcp_nodelay true',
  ];
  // As root, Mosquitto would drop to the `mosquitto` user, which cannot write this directory.
  if (process.getuid?.() === 0) lines.push('user root');
  if (opts.users) {
    if (!install.passwd) throw new Error('mosquitto_passwd not found; cannot create users');
    const passwordFile = path.join(dir, 'passwd');
    for (const [i, user] of opts.users.entries()) {
      const args = i === 0 ? ['-c', '-b', passwordFile, user.username, user.password] : ['-b', passwordFile, user.username, user.password];
      const result = spawnSync(install.passwd, args, { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`mosquitto_passwd failed: ${result.stderr}`);
    }
    lines.push('allow_anonymous false', `password_file ${passwordFile}`);
  } else {
    lines.push('allow_anonymous true');
  }
  if (opts.acl) {
    const aclFile = path.join(dir, 'acl');
    fs.writeFileSync(aclFile, mosquittoAcl(opts.acl));
    lines.push(`acl_file ${aclFile}`);
  }
  if (opts.persistence) {
    // Saved on every change as well as on shutdown, so even kill() keeps most state.
    lines.push('persistence true', `persistence_location ${dir}/`, 'autosave_on_changes true', 'autosave_interval 1');
  } else {
    lines.push('persistence false');
  }
  if (opts.maxQueuedMessages !== undefined) lines.push(`max_queued_messages ${opts.maxQueuedMessages}`);
  if (tlsFiles) {
    lines.push(
      `cafile ${tlsFiles.ca}`,
      `certfile ${path.join(dir, 'server.crt')}`,
      `keyfile ${path.join(dir, 'server.key')}`,
      'require_certificate true',
      'tls_version tlsv1.2',
    );
  }
  fs.writeFileSync(conf, `${lines.join('\n')}\n`);

  let running: WatchedBroker | null = null;
  let removed = false;
  const launch = async () => {
    const shell = spawn('/bin/sh', ['-c', WATCHDOG, install.broker, conf], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    shell.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    shell.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = () => shell.exitCode !== null || shell.signalCode !== null;
    shell.once('exit', () => shell.stdin?.end());
    const failure = () => `${stderr}${readTail(logFile)}`;
    await waitForPort(port, () => (exited() ? failure() : null));
    const pid = Number.parseInt(stdout, 10);
    if (!Number.isSafeInteger(pid)) throw new Error(`no mosquitto pid from the watchdog: ${JSON.stringify(stdout)}`);
    running = { shell, pid };
  };
  const terminate = async (signal: NodeJS.Signals) => {
    const current = running;
    running = null;
    if (!current || current.shell.exitCode !== null || current.shell.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => current.shell.once('exit', () => resolve()));
    process.kill(current.pid, signal);
    await exited;
  };

  await launch();
  return {
    url: `${tlsFiles ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    kind: 'mosquitto',
    protocolVersion: 5,
    ...(tlsFiles ? { tlsFiles } : {}),
    get pid() {
      return running?.pid;
    },
    async stop() {
      await terminate('SIGTERM');
      if (!removed) {
        removed = true;
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    async restart() {
      if (removed) throw new Error('broker was stopped');
      await terminate('SIGTERM');
      await launch();
    },
    async kill() {
      await terminate('SIGKILL');
    },
  };
}

function mosquittoAcl(rules: BrokerAclRule[]): string {
  // Lines before the first `user` line apply to anonymous clients.
  const anonymous = rules.filter((r) => r.user === undefined);
  const users = [...new Set(rules.flatMap((r) => (r.user === undefined ? [] : [r.user])))];
  const out = anonymous.map((r) => `topic ${r.access} ${r.topic}`);
  for (const user of users) {
    out.push(`user ${user}`, ...rules.filter((r) => r.user === user).map((r) => `topic ${r.access} ${r.topic}`));
  }
  return `${out.join('\n')}\n`;
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

/** Polls until the port accepts a TCP connection; `failed` returns a reason once the broker died. */
async function waitForPort(port: number, failed: () => string | null): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const reason = failed();
    if (reason !== null) throw new Error(`broker exited during startup:\n${reason}`);
    if (await canConnect(port)) return;
    if (Date.now() > deadline) throw new Error(`broker did not accept connections on ${port} within ${START_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A throwaway P-256 CA, a server certificate for 127.0.0.1 and a client certificate, via openssl. */
export function makeTlsFiles(dir: string): TestTlsFiles {
  const run = (args: string[]) => {
    const result = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (result.error || result.status !== 0) {
      throw new Error(`openssl ${args[0]} failed: ${result.error?.message ?? result.stderr}`);
    }
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=ztedge test CA', '-days', '2']);
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  fs.writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const name of ['server', 'client']) {
    run(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=ztedge test ${name}`]);
    run([
      'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`,
    ]);
  }
  for (const file of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, file), 0o600);
  return { ca: path.join(dir, 'ca.crt'), clientCert: path.join(dir, 'client.crt'), clientKey: path.join(dir, 'client.key') };
}

async function startAedes(opts: StartBrokerOptions): Promise<TestBroker> {
  const port = await freePort();
  const dir = opts.tls ? makeTempDir() : null;
  const tlsFiles = dir ? makeTlsFiles(dir) : undefined;
  const sockets = new Set<net.Socket>();
  let broker: Aedes | null = null;
  let server: net.Server | null = null;
  let keptPersistence: AedesOptions['persistence'];
  let stopped = false;

  const launch = async () => {
    const instance = await Aedes.createBroker({
      ...aedesAuth(opts),
      ...(opts.persistence && keptPersistence ? { persistence: keptPersistence } : {}),
    });
    const listener = tlsFiles
      ? tls.createServer(
          {
            ca: fs.readFileSync(tlsFiles.ca),
            cert: fs.readFileSync(path.join(dir!, 'server.crt')),
            key: fs.readFileSync(path.join(dir!, 'server.key')),
            requestCert: true,
            rejectUnauthorized: true,
          },
          (socket) => instance.handle(socket),
        )
      : net.createServer((socket) => instance.handle(socket));
    listener.on(tlsFiles ? 'secureConnection' : 'connection', (socket: net.Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(port, '127.0.0.1', () => resolve());
    });
    broker = instance;
    server = listener;
  };
  const shutdown = async (abrupt: boolean) => {
    const [instance, listener] = [broker, server];
    broker = null;
    server = null;
    if (!instance || !listener) return;
    // An in-memory persistence outlives its broker, so a restarted broker sees the same state.
    keptPersistence = (instance as unknown as { persistence: AedesOptions['persistence'] }).persistence;
    if (abrupt) for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => instance.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  };

  await launch();
  return {
    url: `${tlsFiles ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    kind: 'aedes',
    protocolVersion: 4,
    pid: undefined,
    ...(tlsFiles ? { tlsFiles } : {}),
    async stop() {
      stopped = true;
      await shutdown(false);
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      if (stopped) throw new Error('broker was stopped');
      await shutdown(false);
      await launch();
    },
    async kill() {
      await shutdown(true);
    },
  };
}

/** aedes hooks equivalent to Mosquitto's password file and ACL file. */
function aedesAuth(opts: StartBrokerOptions): Partial<AedesOptions> {
  const usernames = new WeakMap<object, string>();
  const allowed = (client: object | null, topic: string, access: 'read' | 'write') => {
    if (!opts.acl) return true;
    const user = client ? usernames.get(client) : undefined;
    return opts.acl.some(
      (rule) => rule.user === user && (rule.access === access || rule.access === 'readwrite') && filterMatches(rule.topic, topic),
    );
  };
  return {
    ...(opts.users
      ? {
          authenticate(client, username, password, done) {
            const ok = opts.users!.some((u) => u.username === username && password?.toString() === u.password);
            if (ok && username !== undefined) usernames.set(client, username);
            done(null, ok);
          },
        }
      : {}),
    authorizePublish(client, packet, done) {
      done(allowed(client, packet.topic, 'write') ? null : new Error('not authorized'));
    },
    authorizeForward(client, packet) {
      return allowed(client, packet.topic, 'read') ? packet : null;
    },
  };
}

/** MQTT topic filter matching (`+` one level, `#` the rest); `$` topics only match explicit filters. */
function filterMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (t[0]?.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}
