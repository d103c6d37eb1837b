// A private PostgreSQL server for tests: initdb into a temp dir, started on a free 127.0.0.1
// port with its socket in that dir, stopped (and the dir removed) after. The system's server on
// 5432 is never used. initdb and postgres refuse to run as root, so as root the dir is owned by
// the `postgres` user and both run through runuser. The binaries are found, not assumed:
// `pg_config --bindir`, else the newest /usr/lib/postgresql/<version>/bin. A missing PostgreSQL
// fails the test (CI installs it: .ci/run); it is never skipped silently.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './free-port.js';

export interface TestPostgres {
  port: number;
  /** A URL for a fresh, empty database on this server. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
  version: string;
}

const SUPERUSER = 'ztedge';
let announced = false;

export function findPostgresBin(): string {
  const fromConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const candidates: string[] = [];
  if (fromConfig.status === 0) candidates.push(fromConfig.stdout.trim());
  const base = '/usr/lib/postgresql';
  if (fs.existsSync(base)) {
    const versions = fs.readdirSync(base).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => path.join(base, v, 'bin')));
  }
  const bin = candidates.find((dir) => fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl')));
  if (bin === undefined) throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package postgresql (.ci/run does)');
  return bin;
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = findPostgresBin();
  const asRoot = process.getuid?.() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-pg-'));
  const run = (tool: string, args: string[]) => {
    const cmd = asRoot ? 'runuser' : path.join(bin, tool);
    const argv = asRoot ? ['-u', 'postgres', '--', path.join(bin, tool), ...args] : args;
    const result = spawnSync(cmd, argv, { encoding: 'utf8', cwd: dir });
    if (result.status !== 0) throw new Error(`${tool} failed (${result.status}): ${result.error?.message ?? ''}${result.stderr}${result.stdout}`);
    return result.stdout;
  };
  if (asRoot) spawnSync('chown', ['postgres:postgres', dir]);
  const data = path.join(dir, 'data');
  run('initdb', ['-D', data, '-A', 'trust', '-U', SUPERUSER, '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  // fsync stays on: the tests kill -9 collectors and count on committed batches surviving.
  run('pg_ctl', ['-D', data, '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, '-l', path.join(dir, 'log'), '-w', 'start']);
  const stop = () => {
    spawnSync(asRoot ? 'runuser' : path.join(bin, 'pg_ctl'), asRoot ? ['-u', 'postgres', '--', path.join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', 'stop'] : ['-D', data, '-m', 'immediate', 'stop']);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // A test process that dies without its cleanup still takes its server down.
  process.once('exit', stop);
  const admin = `postgres://${SUPERUSER}@127.0.0.1:${port}/postgres`;
  const version = run('postgres', ['--version']).trim();
  if (!announced) {
    announced = true;
    console.log(`[postgres] ${version} on 127.0.0.1:${port}`);
  }
  let n = 0;
  return {
    port,
    version,
    async createDatabase() {
      const name = `t${process.pid}_${n++}`;
      const client = new pg.Client({ connectionString: admin });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://${SUPERUSER}@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      process.off('exit', stop);
      stop();
    },
  };
}

