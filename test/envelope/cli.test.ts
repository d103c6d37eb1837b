import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { deriveKid, publicKeyFromPem, publicKeyToPem } from '../../src/crypto/keys.js';
import { main } from '../../src/cli/main.js';
import { contextAad } from '../../src/envelope/claims.js';
import { exampleKey, loadCoseExamples } from './support/cose-examples.js';

const run = promisify(execFile);
const repoRoot = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'ztedge-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function ztedge(args: string[], stdin: Uint8Array = new Uint8Array(0)): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    stdout: (text) => void (stdout += text + '\n'),
    stderr: (text) => void (stderr += text + '\n'),
    readStdin: async () => Buffer.from(stdin),
  });
  return { code, stdout, stderr };
}

const path = (name: string) => join(dir, name);
const ISS = 'Operator::"ana"';

describe('ztedge keygen (spawned)', () => {
  it.each(['ed25519', 'p256'])('writes a 0600 %s private key, a public key, and prints the kid', async (alg) => {
    const { stdout } = await run('node', [join(repoRoot, 'src/cli/bin.mjs'), 'keygen', '--alg', alg, '--out', path(`spawned-${alg}`)]);
    expect(statSync(path(`spawned-${alg}.key`)).mode & 0o777).toBe(0o600);
    const pub = publicKeyFromPem(readFileSync(path(`spawned-${alg}.pub`), 'utf8'));
    expect(pub.keyType).toBe(alg);
    expect(stdout.trim()).toBe(Buffer.from(deriveKid(pub.raw)).toString('hex'));
  });

  it('exits non-zero with the error code and never overwrites a key', async () => {
    const before = readFileSync(path('spawned-ed25519.key'), 'utf8');
    const failure = await run('node', [join(repoRoot, 'src/cli/bin.mjs'), 'keygen', '--alg', 'ed25519', '--out', path('spawned-ed25519')]).catch((err: { code: number; stderr: string }) => err);
    expect(failure).toMatchObject({ code: 1 });
    expect((failure as { stderr: string }).stderr).toContain('KEY_FILE_EXISTS');
    expect(readFileSync(path('spawned-ed25519.key'), 'utf8')).toBe(before);
  });
});

describe('ztedge keygen, cmd sign, envelope verify', () => {
  it('refuses an unknown algorithm as a usage error', async () => {
    expect((await ztedge(['keygen', '--alg', 'rsa', '--out', path('x')])).code).toBe(2);
  });

  it.each(['ed25519', 'p256'])('signs a command and verifies it for its device only (%s)', async (alg) => {
    expect((await ztedge(['keygen', '--alg', alg, '--out', path(alg)])).code).toBe(0);
    const envelope = path(`${alg}.cbor`);
    const sign = await ztedge(['cmd', 'sign', '--key', path(`${alg}.key`), '--iss', ISS, '--aud', 'robot-1', '--act', 'move', '--res', 'Robot::"arm"', '--args', '{"speed": 3, "axes": ["x", "y"]}', '--lifetime', '2m', '--out', envelope]);
    expect(sign).toMatchObject({ code: 0, stderr: '' });

    const ok = await ztedge(['envelope', 'verify', envelope, '--key', path(`${alg}.pub`), '--device', 'robot-1']);
    expect(ok.code).toBe(0);
    const shown = JSON.parse(ok.stdout) as { valid: boolean; alg: string; command: Record<string, unknown> };
    expect(shown.valid).toBe(true);
    expect(shown.alg).toBe(alg === 'ed25519' ? 'EdDSA' : 'ES256');
    expect(shown.command).toMatchObject({ issuer: ISS, aud: 'robot-1', act: 'move', res: 'Robot::"arm"', args: { speed: 3, axes: ['x', 'y'] } });
    expect(Date.parse(shown.command.exp as string) - Date.parse(shown.command.iat as string)).toBe(120_000);

    const aad = Buffer.from(contextAad('robot-1', 'cmd')).toString('hex');
    expect((await ztedge(['envelope', 'verify', envelope, '--key', path(`${alg}.pub`), '--aad', aad])).code).toBe(0);

    const wrongDevice = await ztedge(['envelope', 'verify', envelope, '--key', path(`${alg}.pub`), '--device', 'robot-2']);
    expect(wrongDevice.code).toBe(1);
    expect(wrongDevice.stderr).toMatch(/^ENVELOPE_BAD_SIGNATURE/);
    const wrongTopic = await ztedge(['envelope', 'verify', envelope, '--key', path(`${alg}.pub`), '--device', 'robot-1', '--topic', 'approve']);
    expect(wrongTopic.stderr).toMatch(/^ENVELOPE_BAD_SIGNATURE/);
  });

  it('prints hex without --out, and verifies hex files and standard input', async () => {
    const sign = await ztedge(['cmd', 'sign', '--key', path('ed25519.key'), '--iss', ISS, '--aud', 'robot-1', '--act', 'stop', '--res', 'Robot::"arm"']);
    expect(sign.stdout.trim()).toMatch(/^d284[0-9a-f]+$/);
    writeFileSync(path('hex.txt'), sign.stdout);
    expect((await ztedge(['envelope', 'verify', path('hex.txt'), '--key', path('ed25519.pub'), '--device', 'robot-1'])).code).toBe(0);
    const binary = Buffer.from(sign.stdout.trim(), 'hex');
    const viaStdin = await ztedge(['envelope', 'verify', '-', '--key', path('ed25519.pub'), '--device', 'robot-1', '--verifier', 'noble'], binary);
    expect(viaStdin.code).toBe(0);
  });

  it('refuses a second acceptance of the same command with --replay-db', async () => {
    const args = ['envelope', 'verify', path('ed25519.cbor'), '--key', path('ed25519.pub'), '--device', 'robot-1', '--replay-db', path('state.db')];
    expect((await ztedge(args)).code).toBe(0);
    const replay = await ztedge(args);
    expect(replay.code).toBe(1);
    expect(replay.stderr).toMatch(/^ENVELOPE_REPLAY/);
  });

  it('refuses a group- or world-readable private key', async () => {
    writeFileSync(path('loose.key'), readFileSync(path('ed25519.key')), { mode: 0o600 });
    chmodSync(path('loose.key'), 0o644);
    const sign = await ztedge(['cmd', 'sign', '--key', path('loose.key'), '--iss', ISS, '--aud', 'robot-1', '--act', 'move', '--res', 'Robot::"arm"']);
    expect(sign.code).toBe(1);
    expect(sign.stderr).toMatch(/^KEY_FILE_PERMISSIONS/);
  });

  it.each([
    ['a float', '{"speed": 1.5}'],
    ['an integer beyond 2^53', '{"n": 9223372036854775807}'],
    ['null', '{"n": null}'],
    ['an array', '[1]'],
    ['invalid JSON', '{speed: 1}'],
  ])('refuses --args with %s', async (_name, args) => {
    const sign = await ztedge(['cmd', 'sign', '--key', path('ed25519.key'), '--iss', ISS, '--aud', 'robot-1', '--act', 'move', '--res', 'Robot::"arm"', '--args', args]);
    expect(sign.code).toBe(2);
    expect(sign.stderr).toContain('--args');
  });

  it('needs the device binding to check a command', async () => {
    const result = await ztedge(['envelope', 'verify', path('ed25519.cbor'), '--key', path('ed25519.pub')]);
    expect(result.code).toBe(2);
  });
});

describe('ztedge envelope verify on the COSE WG examples', () => {
  const examples = loadCoseExamples();
  const expectedCode: Record<string, string> = {
    'ecdsa-examples/ecdsa-sig-04.json': 'ENVELOPE_ALG_UNSUPPORTED',
    'sign1-tests/sign-fail-01.json': 'ENVELOPE_WRONG_TAG',
    'sign1-tests/sign-fail-02.json': 'ENVELOPE_BAD_SIGNATURE',
    'sign1-tests/sign-fail-03.json': 'ENVELOPE_ALG_UNSUPPORTED',
    'sign1-tests/sign-fail-04.json': 'ENVELOPE_ALG_UNSUPPORTED',
    'sign1-tests/sign-fail-06.json': 'ENVELOPE_BAD_SIGNATURE',
    'sign1-tests/sign-fail-07.json': 'ENVELOPE_BAD_SIGNATURE',
    'sign1-tests/sign-pass-01.json': 'ENVELOPE_ALG_MISSING',
  };

  it.each(examples)('$path', async ({ path: name, example, bytes }) => {
    const file = path(name.replace('/', '-') + '.cbor');
    const keyFile = path(name.replace('/', '-') + '.pub');
    writeFileSync(file, bytes);
    writeFileSync(keyFile, publicKeyToPem(exampleKey(example.input.sign0.key)));
    const external = example.input.sign0.external;
    const result = await ztedge(['envelope', 'verify', file, '--key', keyFile, ...(external === undefined ? [] : ['--aad', external])]);
    const code = expectedCode[name];
    if (code === undefined) {
      expect(result).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(result.stdout)).toMatchObject({ valid: true });
    } else {
      expect(result.code).toBe(1);
      expect(result.stderr.startsWith(`${code}:`)).toBe(true);
    }
  });

  it('shows a message without verifying it (inspect)', async () => {
    const { bytes } = examples.find((e) => e.path === 'sign1-tests/sign-fail-02.json')!;
    writeFileSync(path('inspect.cbor'), bytes);
    const result = await ztedge(['envelope', 'inspect', path('inspect.cbor')]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ tagged: true, alg: 'ES256', kid: '3131', payload: { text: 'This is the content/' } });
  });
});
