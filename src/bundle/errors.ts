// Every refusal of a policy bundle — while building, signing, verifying or activating it — is a
// BundleError with a stable UPPER_SNAKE code, so the store, the audit log, the status API and
// tests match on the reason without parsing messages.
import { ZtedgeError } from '../errors.js';

export const BUNDLE_ERROR_CODES = [
  // reading and decoding
  'BUNDLE_TOO_LARGE',
  'BUNDLE_TRUNCATED',
  'BUNDLE_MALFORMED',
  'BUNDLE_UNREADABLE',
  // signatures
  'BUNDLE_UNSIGNED',
  'BUNDLE_THRESHOLD',
  'BUNDLE_UNKNOWN_SIGNER',
  'BUNDLE_BAD_SIGNATURE',
  'BUNDLE_ALREADY_SIGNED',
  // manifest
  'BUNDLE_ROLLBACK',
  'BUNDLE_EXPIRED',
  'BUNDLE_NOT_YET_VALID',
  'BUNDLE_SCOPE',
  'BUNDLE_AGENT_VERSION',
  'BUNDLE_ATTESTATION_PROFILE',
  // content
  'BUNDLE_POLICY_INVALID',
  'BUNDLE_ENTITIES_INVALID',
  'BUNDLE_ISSUERS_INVALID',
  'BUNDLE_TEST_FAILED',
  // validation against the source's Cedar schema, at build
  'BUNDLE_SCHEMA_INVALID',
  'BUNDLE_VALIDATION_FAILED',
  // building from sources, and the verifier's own trust configuration
  'BUNDLE_SOURCE_INVALID',
  'BUNDLE_VERIFIER_CONFIG',
  // activation
  'BUNDLE_NO_ACTIVE',
  'BUNDLE_NO_LKG',
  // signed rollback instructions (rollback.ts)
  'ROLLBACK_EXPIRED',
  /** The instruction's `from` is not the device's active bundle (stale, or replayed). */
  'ROLLBACK_NOT_ACTIVE',
  /** The instruction's `to` is not the device's last-known-good bundle. */
  'ROLLBACK_NOT_LKG',
] as const;

export type BundleErrorCode = (typeof BUNDLE_ERROR_CODES)[number];

/** A policy diagnostic or entity error, located in a bundle source file. */
export interface BundleProblem {
  /** Stable code of the underlying error (PARSE_*, ENTITIES_*, JSON_*...). */
  code: string;
  /** `file:line:col: error: message [CODE]` or `file: message` when there is no position. */
  message: string;
}

export interface BundleErrorDetails {
  /** The bundle's revision, when the refusal came after the manifest was read. */
  revision?: number;
  /** Individual problems behind BUNDLE_POLICY_INVALID / _ENTITIES_INVALID / _SOURCE_INVALID. */
  problems?: readonly BundleProblem[];
  /** Names of the embedded tests that failed (BUNDLE_TEST_FAILED). */
  failedTests?: readonly string[];
}

export class BundleError extends ZtedgeError<BundleErrorCode> {
  readonly revision: number | undefined;
  readonly problems: readonly BundleProblem[];
  readonly failedTests: readonly string[];

  constructor(code: BundleErrorCode, message: string, details: BundleErrorDetails = {}, options?: { cause?: unknown }) {
    super(code, message, options);
    this.revision = details.revision;
    this.problems = details.problems ?? [];
    this.failedTests = details.failedTests ?? [];
  }

  override details(): readonly string[] {
    return this.problems.map((problem) => problem.message);
  }

  /** The same refusal, known to concern `revision`. */
  withRevision(revision: number): BundleError {
    if (this.revision !== undefined) return this;
    return new BundleError(
      this.code,
      this.message,
      { revision, problems: this.problems, failedTests: this.failedTests },
      { cause: this.cause },
    );
  }
}

export function isBundleError(value: unknown): value is BundleError {
  return value instanceof BundleError;
}
