// A private software TPM for tests: `swtpm` (Debian swtpm, swtpm-tools) on a free loopback port
// pair (server P, control P+1), its state in a temp directory, stopped after the test file.
// Driven with tpm2-tools through TCTI `swtpm:host=127.0.0.1,port=P`.
//
// Missing tools fail the test file — CI must not skip the TPM silently — unless
// ZTEDGE_TEST_NO_TPM=1 says this machine has no TPM tooling; then the TPM tests are skipped,
// and say so.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestTpm {
  tcti: string;
  port: number;
  stateDir: string;
  stop(): Promise<void>;
}

const TOOLS = ['swtpm', 'tpm2_createprimary', 'tpm2_quote', 'tpm2_pcrextend', 'tpm2_pcrreset', 'tpm2_flushcontext'];

/**
 * Whether TPM tests run: true when the tools are installed; false only when ZTEDGE_TEST_NO_TPM=1
 * declares a machine without them. Otherwise missing tools are an error.
 */
export function tpmToolsAvailable(): boolean {
  const missing = TOOLS.filter((tool) => spawnSync('sh', ['-c', 'command -v "$0"', tool]).status !== 0);
  if (missing.length === 0) return true;
  if (process.env.ZTEDGE_TEST_NO_TPM === '1') {
    console.log(`[swtpm] skipping TPM tests: ZTEDGE_TEST_NO_TPM=1 and ${missing.join(', ')} missing`);
    return false;
  }
  throw new Error(
    `TPM tools missing: ${missing.join(', ')}. Install them (apt-get install swtpm swtpm-tools tpm2-tools; .ci/run does) or set ZTEDGE_TEST_NO_TPM=1 on a machine without TPM tooling.`,
  );
}

export async function startSwtpm(): Promise<TestTpm> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-swtpm-'));
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freePortPair();
    const child = spawn(
      'swtpm',
      [
        'socket', '--tpm2',
        '--tpmstate', `dir=${stateDir}`,
        '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`,
        '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
        '--flags', 'not-need-init,startup-clear',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    if (await listening(child, port)) {
      console.log(`[swtpm] ${version()} on 127.0.0.1:${port}`);
      return {
        tcti: `swtpm:host=127.0.0.1,port=${port}`,
        port,
        stateDir,
        stop: async () => {
          await stopChild(child);
          fs.rmSync(stateDir, { recursive: true, force: true });
        },
      };
    }
    await stopChild(child);
    if (!/address already in use|bind/i.test(stderr)) throw new Error(`swtpm did not start: ${stderr.trim()}`);
  }
  throw new Error('swtpm: no free port pair found');
}

function version(): string {
  return spawnSync('swtpm', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]?.trim() ?? 'swtpm';
}

async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port: p } = server.address() as net.AddressInfo;
        server.close(() => resolve(p));
      });
    });
    if (port < 65535 && (await portFree(port + 1))) return port;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function listening(child: ChildProcess, port: number): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) return false;
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
