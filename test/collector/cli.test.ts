// `ztedge collector`'s refusals before anything starts: unknown options, missing or unreadable
// keys, a bad listen address or database URL — each with a reason and exit status 2 (1 when the
// store cannot be opened).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writePrivateKeyFile } from '../../src/crypto/key-files.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { cli } from '../e2e/support.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-collector-cli-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const key = path.join(dir, 'collector.key');
writePrivateKeyFile(key, generatePrivateKey('ed25519'));
const devices = path.join(dir, 'devices');
fs.mkdirSync(devices);

describe('ztedge collector', () => {
  it('refuses what it does not understand, naming it', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--key', key, '--devices', devices, '--colour', 'blue'], /unknown option --colour/],
      [['--devices', devices], /missing required option --key/],
      [['--key', key, '--devices', devices, '--listen', 'everywhere'], /--listen must be HOST:PORT or PORT/],
      [['--key', key, '--devices', devices, '--tls-cert', 'a.crt'], /--tls-cert and --tls-key go together/],
      [['--key', key, '--devices', devices, '--client-ca', 'ca.crt'], /--client-ca needs --tls-cert/],
      [['--key', key, '--devices', devices, '--mqtt-topic', 'x/+/audit'], /--mqtt-topic needs --mqtt/],
      [['--key', key, '--devices', devices, '--max-batch-bytes', '12abc'], /--max-batch-bytes must be an integer/],
    ];
    for (const [args, message] of cases) {
      const run = await cli(['collector', ...args]);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr.join('\n')).toMatch(message);
    }
  });

  it('refuses a readable private key, a missing device directory and a database URL it cannot use', async () => {
    const loose = path.join(dir, 'loose.key');
    writePrivateKeyFile(loose, generatePrivateKey('ed25519'));
    fs.chmodSync(loose, 0o644);
    let run = await cli(['collector', '--key', loose, '--devices', devices]);
    expect([run.code, run.stderr.join('')]).toEqual([2, expect.stringMatching(/^KEY_FILE_PERMISSIONS: /)]);
    run = await cli(['collector', '--key', key, '--devices', path.join(dir, 'nowhere')]);
    expect([run.code, run.stderr.join('')]).toEqual([2, expect.stringMatching(/cannot read the device key directory/)]);
    run = await cli(['collector', '--key', key, '--devices', devices, '--db', 'mysql://db/audit', '--listen', '0']);
    expect([run.code, run.stderr.join('')]).toEqual([1, expect.stringMatching(/^COLLECTOR_DB_URL: .*postgres:\/\/ URL or a file path/)]);
  });
});
