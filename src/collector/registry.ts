// The devices a collector accepts: a directory holding one public key file per device, named
// `<device id>.pub` (the PEM files `ztedge keygen` writes; copy a device's `.pub` there to
// register it, remove it to stop accepting the device). A batch from a device without a file is
// refused. Files are read when first needed and looked at again after `recheckMs`, so adding or
// removing a device takes effect without a restart.
import fs from 'node:fs';
import path from 'node:path';
import { readPublicKeyFile } from '../crypto/key-files.js';
import type { PublicKey } from '../crypto/keys.js';
import type { DeviceKeys } from './ingest.js';

const DEVICE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class DeviceKeyDirectory implements DeviceKeys {
  private readonly cache = new Map<string, { keys: readonly PublicKey[]; checkedMs: number }>();

  constructor(
    readonly dir: string,
    private readonly opts: { recheckMs?: number; now?: () => number; onProblem?: (device: string, message: string) => void } = {},
  ) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(dir);
    } catch (err) {
      throw new Error(`cannot read the device key directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    if (!stat.isDirectory()) throw new Error(`${dir} is not a directory`);
  }

  keysOf(device: string): readonly PublicKey[] {
    if (!DEVICE_PATTERN.test(device)) return [];
    const now = (this.opts.now ?? Date.now)();
    const cached = this.cache.get(device);
    if (cached !== undefined && now - cached.checkedMs < (this.opts.recheckMs ?? 30_000)) return cached.keys;
    const keys = this.read(device);
    this.cache.set(device, { keys, checkedMs: now });
    return keys;
  }

  /** Device ids with a key file now. */
  list(): string[] {
    return fs
      .readdirSync(this.dir)
      .filter((f) => f.endsWith('.pub') && DEVICE_PATTERN.test(f.slice(0, -4)))
      .map((f) => f.slice(0, -4))
      .sort();
  }

  private read(device: string): readonly PublicKey[] {
    const file = path.join(this.dir, `${device}.pub`);
    if (!fs.existsSync(file)) return [];
    try {
      return [readPublicKeyFile(file)];
    } catch (err) {
      this.opts.onProblem?.(device, (err as Error).message);
      return [];
    }
  }
}
