// Every refusal in attestation — a bad firmware profile, a glob that matches too much, a
// challenge refused, evidence or a TPM quote that does not verify — is an AttestError with a
// stable UPPER_SNAKE code, so the CLI maps codes to exit codes and tests match on reasons.
import { ZtedgeError } from '../errors.js';


export const ATTEST_ERROR_CODES = [
  // firmware profiles and reference files
  'PROFILE_INVALID',
  'PROFILE_NOT_FOUND',
  'REFERENCES_INVALID',
  // measuring
  'ATTEST_GLOB_LIMIT',
  'ATTEST_ROOT_INVALID',
  // challenges
  'ATTEST_NONCE_INVALID',
  'ATTEST_NONCE_REUSED',
  'ATTEST_RATE_LIMITED',
  'ATTEST_NOT_READY',
  // evidence verification, in the order they are checked
  'ATTEST_MALFORMED',
  'ATTEST_WRONG_DEVICE',
  'ATTEST_MEASUREMENT_TAMPERED',
  'ATTEST_BAD_SIGNATURE',
  'ATTEST_NONCE_MISMATCH',
  'ATTEST_EXPIRED',
  'ATTEST_NO_QUOTE',
  'ATTEST_AK_MISMATCH',
  'ATTEST_QUOTE_MALFORMED',
  'ATTEST_QUOTE_BAD_SIGNATURE',
  'ATTEST_QUOTE_NONCE',
  'ATTEST_PCR_MISMATCH',
  'ATTEST_LOG_MISMATCH',
  'ATTEST_REFERENCE_MISMATCH',
  // the TPM
  'TPM_CONFIG_INVALID',
  'TPM_TOOL_MISSING',
  'TPM_COMMAND_FAILED',
] as const;

export type AttestErrorCode = (typeof ATTEST_ERROR_CODES)[number];

export class AttestError extends ZtedgeError<AttestErrorCode> {}
