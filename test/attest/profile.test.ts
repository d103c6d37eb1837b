// Firmware profiles: the shipped ones load; every kind of mistake is refused with its JSON path;
// the example bundles' reference values name these profiles and the paths they measure.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AttestError } from '../../src/attest/errors.js';
import { matchesDevicePath, parseDevicePath } from '../../src/attest/glob.js';
import { DEFAULT_GLOB_LIMIT, listProfiles, loadProfile, loadShippedProfile, parseProfile, shippedProfileNames } from '../../src/attest/profile.js';
import { readBundleSource } from '../../src/bundle/build.js';
import { REPO_ROOT, tempDir } from './support.js';

const PROFILES = path.join(REPO_ROOT, 'firmware-profiles');

function problems(text: unknown): string {
  try {
    parseProfile(typeof text === 'string' ? text : JSON.stringify(text), 'p.json');
  } catch (err) {
    if (err instanceof AttestError && err.code === 'PROFILE_INVALID') return err.message;
    throw err;
  }
  throw new Error('profile was accepted');
}

const VALID = { profile: 'p', measure: [{ path: '/etc/a', critical: true }], interval: '5m' };

describe('firmware profiles', () => {
  it('the shipped profiles load: robot-arm, plc-gateway, edge-gateway', () => {
    expect(listProfiles(PROFILES)).toEqual(['edge-gateway', 'plc-gateway', 'robot-arm']);
    const arm = loadProfile(PROFILES, 'robot-arm');
    expect(arm.intervalMs).toBe(300_000);
    expect(arm.measure.find((m) => m.path.text === '/etc/robot/safety-zones.conf')).toMatchObject({ critical: true, limit: 1 });
    expect(arm.measure.find((m) => m.path.isGlob)).toMatchObject({ critical: false, limit: 32 });
    expect(arm.executors.estop).toEqual({ kind: 'mqtt', timeoutMs: 500 });
    expect(loadProfile(PROFILES, 'edge-gateway').executors.restart_bridge).toMatchObject({ kind: 'exec', command: ['/usr/bin/systemctl', 'restart', 'mosquitto'] });
    expect(loadProfile(PROFILES, 'plc-gateway').executors.write_register).toMatchObject({ kind: 'http', url: 'http://127.0.0.1:8502/write' });
  });

  it('the example bundles reference their profile by name, and only paths that profile measures', () => {
    for (const [example, profileName] of [['robot-cell', 'robot-arm'], ['plc-gateway', 'plc-gateway']] as const) {
      const source = readBundleSource(path.join(REPO_ROOT, 'policies', example));
      expect(source.attestation.map((a) => a.profile)).toEqual([profileName]);
      const profile = loadProfile(PROFILES, profileName);
      for (const file of source.attestation[0]!.files) {
        expect(profile.measure.some((m) => matchesDevicePath(m.path, file.path)), `${example}: ${file.path}`).toBe(true);
      }
      // Every critical plain path has a reference (else posture could never be trusted).
      for (const entry of profile.measure.filter((m) => m.critical && !m.path.isGlob)) {
        expect(source.attestation[0]!.files.map((f) => f.path), `${example}: ${entry.path.text}`).toContain(entry.path.text);
      }
    }
  });

  it('refuses unknown keys, anywhere, naming the JSON path', () => {
    expect(problems({ ...VALID, measures: [] })).toMatch(/\$: unknown key "measures"/);
    expect(problems({ ...VALID, measure: [{ path: '/etc/a', critical: true, optional: true }] })).toMatch(/\$\.measure\[0\]: unknown key "optional"/);
    expect(problems({ ...VALID, executors: { move: { kind: 'mqtt', url: 'http://x' } } })).toMatch(/\$\.executors\["move"\]\.url: does not apply to a mqtt executor/);
    expect(problems(JSON.stringify(VALID).replace('"interval"', '"interval":"1m","interval"'))).toMatch(/duplicate key|JSON_DUPLICATE_KEY|twice/i);
  });

  it('refuses relative paths and bad globs', () => {
    const withPath = (p: string, extra: Record<string, unknown> = {}) => problems({ ...VALID, measure: [{ path: p, critical: false, ...extra }] });
    expect(withPath('etc/a')).toMatch(/\$\.measure\[0\]\.path: "etc\/a" must be an absolute path/);
    expect(withPath('/etc/../shadow')).toMatch(/must not contain "\.\." levels/);
    expect(withPath('/etc//a')).toMatch(/empty levels/);
    expect(withPath('/etc/a/')).toMatch(/must not end with "\/"/);
    expect(withPath('/etc/**/a')).toMatch(/"\*\*" is not supported/);
    expect(withPath('/etc/[ab].conf')).toMatch(/only the glob characters \* and \? are supported/);
    expect(withPath('/etc/{a,b}')).toMatch(/only the glob characters/);
    expect(withPath('/etc/a', { limit: 5 })).toMatch(/limit: applies to globs only/);
    expect(withPath('/etc/*.conf', { limit: 0 })).toMatch(/limit: must be an integer from 1 to 4096/);
    expect(withPath('/etc/*.conf', { limit: 1.5 })).toMatch(/limit: must be an integer/);
  });

  it('refuses a missing or wrong interval, a non-boolean critical, duplicate and empty measure lists', () => {
    expect(problems({ ...VALID, interval: '5 minutes' })).toMatch(/\$\.interval: must be a duration from 1s to 1d/);
    expect(problems({ ...VALID, interval: '500ms' })).toMatch(/\$\.interval/);
    expect(problems({ profile: 'p', measure: [{ path: '/a', critical: true }] })).toMatch(/\$\.interval: is required/);
    expect(problems({ ...VALID, measure: [{ path: '/a', critical: 'yes' }] })).toMatch(/critical: must be true or false/);
    expect(problems({ ...VALID, measure: [{ path: '/a', critical: true }, { path: '/a', critical: false }] })).toMatch(/\$\.measure\[1\]\.path: "\/a" is listed twice/);
    expect(problems({ ...VALID, measure: [] })).toMatch(/at least one file/);
    // Several problems are reported together.
    expect(problems({ profile: 'bad name', measure: [{ path: 'x', critical: 1 }], interval: 'x' }).split('\n').length).toBeGreaterThanOrEqual(5);
  });

  it('loadProfile: not found, file name and profile name must agree', () => {
    const dir = tempDir();
    expect(() => loadProfile(dir, 'robot-arm')).toThrow(expect.objectContaining({ code: 'PROFILE_NOT_FOUND' }));
    expect(() => loadProfile(dir, '../etc/passwd')).toThrow(expect.objectContaining({ code: 'PROFILE_NOT_FOUND' }));
    fs.writeFileSync(path.join(dir, 'arm.json'), JSON.stringify({ ...VALID, profile: 'plc' }));
    expect(() => loadProfile(dir, 'arm')).toThrow(/\$\.profile is "plc", but the file is named for "arm"/);
    fs.writeFileSync(path.join(dir, 'p.json'), JSON.stringify({ ...VALID, measure: [{ path: '/etc/*.conf', critical: true }] }));
    expect(loadProfile(dir, 'p').measure[0]!.limit).toBe(DEFAULT_GLOB_LIMIT);
  });

  it('the shipped profiles by name: the files of firmware-profiles/, and nothing else', () => {
    expect(shippedProfileNames()).toEqual(listProfiles(PROFILES));
    for (const name of shippedProfileNames()) expect(loadShippedProfile(name)).toEqual(loadProfile(PROFILES, name));
    for (const name of ['robot-ar', '../firmware-profiles/robot-arm', 'robot-arm.json']) {
      expect(() => loadShippedProfile(name)).toThrow(
        expect.objectContaining({ code: 'PROFILE_NOT_FOUND', message: expect.stringContaining('(shipped: edge-gateway, plc-gateway, robot-arm)') }),
      );
    }
  });

  it('globs: * and ? within one level, dot files included', () => {
    const glob = parseDevicePath('/etc/robot/*.co?f');
    if (typeof glob === 'string') throw new Error(glob);
    expect(matchesDevicePath(glob, '/etc/robot/zones.conf')).toBe(true);
    expect(matchesDevicePath(glob, '/etc/robot/.hidden.conf')).toBe(true);
    expect(matchesDevicePath(glob, '/etc/robot/sub/zones.conf')).toBe(false);
    expect(matchesDevicePath(glob, '/etc/robot/zones.conf.bak')).toBe(false);
    expect(matchesDevicePath(glob, '/etc/robotx/zones.conf')).toBe(false);
  });
});
