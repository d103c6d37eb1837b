// The COSE working group's examples (cose-wg/Examples): every COSE_Sign1 example verifies
// with its key, or fails, as the example says, on both verifiers. Two examples a strict
// verifier refuses although the suite marks them as passing: sign-pass-01 (alg only in the
// unprotected header) and ecdsa-sig-04 (ES512, not on the allow-list, on a P-256 key).
// sign-pass-03 is untagged: the generic verifier accepts it, a tag-requiring one does not.
import { describe, expect, it } from 'vitest';
import { VERIFIER_NAMES, getVerifier } from '../../src/crypto/verifier.js';
import { verifySign1 } from '../../src/envelope/cose.js';
import { EnvelopeError } from '../../src/envelope/errors.js';
import { exampleKey, loadCoseExamples } from './support/cose-examples.js';

const examples = loadCoseExamples();

/** What this verifier answers for each example: 'ok' or the EnvelopeError code. */
const expected: Record<string, string> = {
  'CWT/A_3.json': 'ok',
  'RFC8152/Appendix_C_2_1.json': 'ok',
  'ecdsa-examples/ecdsa-sig-01.json': 'ok',
  'ecdsa-examples/ecdsa-sig-04.json': 'ENVELOPE_ALG_UNSUPPORTED',
  'eddsa-examples/eddsa-sig-01.json': 'ok',
  'sign1-tests/sign-fail-01.json': 'ENVELOPE_WRONG_TAG',
  'sign1-tests/sign-fail-02.json': 'ENVELOPE_BAD_SIGNATURE',
  'sign1-tests/sign-fail-03.json': 'ENVELOPE_ALG_UNSUPPORTED',
  'sign1-tests/sign-fail-04.json': 'ENVELOPE_ALG_UNSUPPORTED',
  'sign1-tests/sign-fail-06.json': 'ENVELOPE_BAD_SIGNATURE',
  'sign1-tests/sign-fail-07.json': 'ENVELOPE_BAD_SIGNATURE',
  'sign1-tests/sign-pass-01.json': 'ENVELOPE_ALG_MISSING',
  'sign1-tests/sign-pass-02.json': 'ok',
  'sign1-tests/sign-pass-03.json': 'ok',
};

function outcome(run: () => unknown): string {
  try {
    run();
    return 'ok';
  } catch (err) {
    if (err instanceof EnvelopeError) return err.code;
    throw err;
  }
}

describe('COSE WG examples', () => {
  it('covers every example present, and every example marked fail is rejected', () => {
    expect(examples.map((e) => e.path).sort()).toEqual(Object.keys(expected).sort());
    for (const { path, example } of examples) if (example.fail) expect(expected[path]).not.toBe('ok');
  });

  for (const name of VERIFIER_NAMES) {
    describe(name, () => {
      it.each(examples)('$path', ({ path, example, bytes }) => {
        const key = exampleKey(example.input.sign0.key);
        const external = example.input.sign0.external;
        const result = outcome(() =>
          verifySign1(bytes, {
            key,
            requireTag: false,
            verifier: getVerifier(name),
            externalAad: external === undefined ? undefined : new Uint8Array(Buffer.from(external, 'hex')),
          }),
        );
        expect(result).toBe(expected[path]);
      });
    });
  }

  it('refuses the untagged sign-pass-03 where the tag is required', () => {
    const { example, bytes } = examples.find((e) => e.path === 'sign1-tests/sign-pass-03.json')!;
    expect(outcome(() => verifySign1(bytes, { key: exampleKey(example.input.sign0.key) }))).toBe('ENVELOPE_WRONG_TAG');
  });

  it('fails sign-pass-02 without its external data (external_aad is signed)', () => {
    const { example, bytes } = examples.find((e) => e.path === 'sign1-tests/sign-pass-02.json')!;
    expect(outcome(() => verifySign1(bytes, { key: exampleKey(example.input.sign0.key) }))).toBe('ENVELOPE_BAD_SIGNATURE');
  });

  it('finds the key by kid through a resolver (kid 11 in the unprotected header)', () => {
    const { example, bytes } = examples.find((e) => e.path === 'ecdsa-examples/ecdsa-sig-01.json')!;
    const key = exampleKey(example.input.sign0.key);
    const resolver = (kid: Uint8Array) => (Buffer.from(kid).toString() === '11' ? key : undefined);
    expect(Buffer.from(verifySign1(bytes, { key: resolver }).kid!).toString()).toBe('11');
    expect(outcome(() => verifySign1(bytes, { key: () => undefined }))).toBe('ENVELOPE_KID_UNKNOWN');
    expect(outcome(() => verifySign1(bytes, { key: resolver, requireProtectedKid: true }))).toBe('ENVELOPE_KID_MISSING');
  });
});
