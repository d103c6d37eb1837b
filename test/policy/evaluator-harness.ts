// Evaluates one Cedar expression against a small request and entity store, for evaluator tests.
import { expect } from 'vitest';
import { compileExpression, evalEnv, parseExpression } from '../../src/policy/index.js';
import { CedarRecord, Entities, EntityUid, EvalError, requestFromJson, valueKey } from '../../src/policy/index.js';
import type { EvalErrorCode, Value } from '../../src/policy/index.js';

export interface Scenario {
  entities?: Entities;
  /** Context in Cedar's JSON value format. */
  context?: Record<string, unknown>;
  principal?: EntityUid;
  action?: EntityUid;
  resource?: EntityUid;
}

export function evaluate(text: string, s: Scenario = {}): Value {
  const context = s.context
    ? requestFromJson({ principal: { type: 'User', id: 'x' }, action: { type: 'Action', id: 'x' }, resource: { type: 'Doc', id: 'x' }, context: s.context }).context
    : CedarRecord.EMPTY;
  return compileExpression(parseExpression(text))(
    evalEnv(s.entities ?? Entities.empty(), {
      principal: s.principal ?? new EntityUid('User', 'alice'),
      action: s.action ?? new EntityUid('Action', 'view'),
      resource: s.resource ?? new EntityUid('Doc', 'd1'),
      context,
    }),
  );
}

/** The evaluation error `text` raises; fails the test when it evaluates or throws anything else. */
export function evalError(text: string, s: Scenario = {}): EvalError {
  let value: Value;
  try {
    value = evaluate(text, s);
  } catch (e) {
    if (e instanceof EvalError) return e;
    throw e;
  }
  throw new Error(`expected an evaluation error from ${text}, got ${String(value)}`);
}

/** Primitives compare with `===`; sets, records, uids and extension values by canonical key. */
export function expectValue(text: string, expected: Value, s: Scenario = {}): void {
  const actual = evaluate(text, s);
  if (typeof expected === 'object') expect(valueKey(actual), text).toBe(valueKey(expected));
  else expect(actual, text).toBe(expected);
}

export function expectError(text: string, code: EvalErrorCode, s: Scenario = {}): void {
  expect(evalError(text, s).code, text).toBe(code);
}
