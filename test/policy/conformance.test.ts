// Cedar's own integration tests, run through ztedge's engine by the conformance runner.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatFailure, runCedarConformance } from '../../scripts/cedar-conformance.js';

const root = fileURLToPath(new URL('../vectors/cedar/', import.meta.url));
const testsDir = path.join(root, 'tests');
const files = readdirSync(testsDir, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .flatMap((d) => readdirSync(path.join(testsDir, d.name)).filter((f) => f.endsWith('.json')).map((f) => path.join(testsDir, d.name, f)))
  .sort();
/** Requests in the files, counted independently of the runner (only array lengths are read). */
const requestCount = files.reduce((n, f) => n + (JSON.parse(readFileSync(f, 'utf8')) as { requests: unknown[] }).requests.length, 0);
const readText = (f: string) => readFileSync(f, 'utf8');

describe('Cedar integration tests', () => {
  it('finds the test files', () => {
    expect(files.length).toBeGreaterThan(20);
    expect(requestCount).toBeGreaterThan(50);
  });

  it('passes every request, checking every request in the files', () => {
    const report = runCedarConformance(root, files);
    expect(report.failures.map(formatFailure)).toEqual([]);
    expect(report.requests).toBe(requestCount);
    expect(report.passed).toBe(requestCount);
  });

  it('reports a request whose expected decision is wrong', () => {
    const target = files.find((f) => readText(f).includes('"decision": "allow"'))!;
    const tampered = (f: string) => (f === target ? readText(f).replace('"decision": "allow"', '"decision": "deny"') : readText(f));
    const report = runCedarConformance(root, [target], tampered);
    expect(report.failures).toHaveLength(1);
    expect(report.failures[0]!.file).toBe(target);
    expect(report.failures[0]!.expected).toMatch(/^deny reasons \[policy\d+.*\] errors \[\]$/);
    expect(report.failures[0]!.got).toMatch(/^allow reasons \[policy\d+.*\] errors \[\]$/);
    expect(report.passed + report.failures.length).toBe(report.requests);
  });

  it('reports a wrong set of determining policies', () => {
    const target = files.find((f) => /"reason": \[\s*"policy0"\s*\]/.test(readText(f)))!;
    const tampered = (f: string) => readText(f).replace(/"reason": \[\s*"policy0"\s*\]/, '"reason": ["policy0", "policy9"]');
    const report = runCedarConformance(root, [target], tampered);
    expect(report.failures).toHaveLength(1);
    expect(report.failures[0]!.expected).toContain('reasons [policy0, policy9]');
  });

  it('fails every request of a file whose policies are missing', () => {
    const target = files[0]!;
    const missingPolicies = (f: string) => {
      if (f.endsWith('.cedar')) throw Object.assign(new Error(`ENOENT: no such file: ${f}`), { code: 'ENOENT' });
      return readText(f);
    };
    const report = runCedarConformance(root, [target], missingPolicies);
    const count = (JSON.parse(readText(target)) as { requests: unknown[] }).requests.length;
    expect(report.requests).toBe(count);
    expect(report.passed).toBe(0);
    expect(report.failures).toHaveLength(count);
    expect(report.failures[0]!.got).toContain('ENOENT');
  });

  it('accepts every field of the format, ignoring the ones it does not implement', () => {
    const target = files.find((f) => readText(f).includes('"shouldValidate": true'))!;
    const doc = JSON.parse(readText(target)) as Record<string, unknown> & { requests: Array<Record<string, unknown>> };
    const full = JSON.stringify({
      ...doc,
      policyFormat: 'cedar',
      schemaFormat: 'cedar',
      shouldValidate: false,
      requests: doc.requests.map((r, i) => ({ ...r, validateRequest: i % 2 === 0 })),
    });
    const report = runCedarConformance(root, [target], (f) => (f === target ? full : readText(f)));
    expect(report.failures.map(formatFailure)).toEqual([]);
    expect(report.passed).toBe(doc.requests.length);
  });

  it('skips, and counts, a file whose policies are in Cedar JSON syntax', () => {
    const target = files[0]!;
    const doc = JSON.parse(readText(target)) as { requests: unknown[] };
    const report = runCedarConformance(root, [target], (f) => (f === target ? JSON.stringify({ ...doc, policyFormat: 'json' }) : readText(f)));
    expect(report).toMatchObject({ requests: 0, passed: 0, failures: [], skipped: [{ file: target, requests: doc.requests.length }] });
  });

  it('refuses fields the format does not have, and ill-typed ignored fields', () => {
    const target = files[0]!;
    const doc = JSON.parse(readText(target)) as Record<string, unknown> & { requests: Array<Record<string, unknown>> };
    const run = (text: string) => runCedarConformance(root, [target], (f) => (f === target ? text : readText(f)));
    expect(run(JSON.stringify({ ...doc, extra: 1 })).failures[0]!.got).toContain('"extra"');
    expect(run(JSON.stringify({ ...doc, shouldValidate: 'yes' })).failures[0]!.got).toContain('"shouldValidate" has the wrong type');
    const badRequest = run(JSON.stringify({ ...doc, requests: [{ ...doc.requests[0], validateRequest: 'no' }, { ...doc.requests[0], note: 'x' }] }));
    expect(badRequest.failures.map((f) => f.got)).toEqual([
      'the request field "validateRequest" has the wrong type',
      'the request has a field the format does not have: "note"',
    ]);
  });

  it('reports an unreadable test file as one failure', () => {
    const report = runCedarConformance(root, ['broken.json'], () => '{"requests": [');
    expect(report.requests).toBe(1);
    expect(report.failures).toHaveLength(1);
    expect(report.failures[0]!.got).toContain('JSON_SYNTAX');
  });
});
