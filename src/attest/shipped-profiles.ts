// The texts of the firmware profiles shipped with ztedge (firmware-profiles/<name>.json), by name.
// From the sources they are read from that directory; the build (scripts/build.ts) replaces this
// module with one holding the same texts, taken from this function, so that a built ztedge (the
// single executable above all) needs no file beside it.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function shippedProfileTexts(): ReadonlyMap<string, string> {
  const dir = fileURLToPath(new URL('../../firmware-profiles/', import.meta.url));
  return new Map(
    fs
      .readdirSync(dir)
      .filter((file) => file.endsWith('.json'))
      .sort()
      .map((file) => [file.slice(0, -'.json'.length), fs.readFileSync(path.join(dir, file), 'utf8')]),
  );
}
