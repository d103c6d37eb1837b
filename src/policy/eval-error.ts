// Evaluation errors of one policy condition. Cedar skips a policy whose condition errors and
// reports it; the authorizer catches these per policy. Codes are stable strings.
import { displayValue, typeName } from './value.js';
import type { Value } from './value.js';
import { ZtedgeError } from '../errors.js';

export type EvalErrorCode =
  | 'EVAL_TYPE'
  | 'EVAL_MISSING_ATTR'
  | 'EVAL_ENTITY_NOT_FOUND'
  | 'EVAL_OVERFLOW'
  | 'EVAL_EXTENSION'
  | 'EVAL_MISSING_TAG'
  | 'EVAL_ARITY';

export class EvalError extends ZtedgeError<EvalErrorCode> {
  constructor(code: EvalErrorCode, message: string) {
    // A policy's evaluation error is data about the policy, not a defect to trace: skipping the
    // stack capture keeps an erroring policy as cheap as a false one.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(code, message);
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/** `type error: expected long, got string`, naming the entity type when it helps. */
export function typeError(expected: readonly string[], got: Value): EvalError {
  const want = expected.length === 1 ? expected[0] : `one of [${expected.join(', ')}]`;
  return new EvalError('EVAL_TYPE', `type error: expected ${want}, got ${typeName(got)} ${displayValue(got)}`);
}
