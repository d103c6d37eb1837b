// Cedar's extension functions (ip, decimal, datetime, duration) and extension methods, in the one
// table the parser (which names exist, and whether each is called as a function or a method),
// the policy compiler, the argument-count lint and the JSON `__extn` escape all read. Each checks
// its argument count and types when applied, as Cedar does: a call with the wrong number of
// arguments parses, and fails when evaluated. Bad literals and overflow become EVAL_EXTENSION.
import { EvalError, typeError } from './eval-error.js';
import { ExtensionError } from './ext/error.js';
import { Datetime, Decimal, Duration, IpAddr } from './value.js';
import type { Value } from './value.js';

export interface ExtensionFunction {
  readonly name: string;
  /** Constructors are called as functions, `ip("..")`; the rest as methods, `x.isLoopback()`. */
  readonly style: 'function' | 'method';
  /** Number of arguments, the method receiver included. */
  readonly arity: number;
  /** Applies the function to exactly `arity` arguments; throws EvalError. */
  readonly apply: (args: readonly Value[]) => Value;
}

/** A value type an extension function accepts: its name for errors and its runtime test. */
interface Kind<T extends Value> {
  readonly type: string;
  readonly is: (v: Value) => v is T;
}

const DEC: Kind<Decimal> = { type: 'decimal', is: (v): v is Decimal => v instanceof Decimal };
const IP: Kind<IpAddr> = { type: 'ipaddr', is: (v): v is IpAddr => v instanceof IpAddr };
const DT: Kind<Datetime> = { type: 'datetime', is: (v): v is Datetime => v instanceof Datetime };
const DUR: Kind<Duration> = { type: 'duration', is: (v): v is Duration => v instanceof Duration };

function expect<T extends Value>(v: Value, kind: Kind<T>): T {
  if (kind.is(v)) return v;
  throw typeError([kind.type], v);
}

function expectString(v: Value): string {
  if (typeof v === 'string') return v;
  throw typeError(['string'], v);
}

/** Runs an extension operation, turning its ExtensionError into a Cedar evaluation error. */
function guarded<T>(fnName: string, op: () => T): T {
  try {
    return op();
  } catch (e) {
    if (e instanceof ExtensionError) {
      throw new EvalError('EVAL_EXTENSION', `error while evaluating \`${fnName}\`: ${e.message}`);
    }
    throw e;
  }
}

const constructor = (name: string, parse: (s: string) => Value): ExtensionFunction => ({
  name,
  style: 'function',
  arity: 1,
  apply: ([s]) => guarded(name, () => parse(expectString(s!))),
});

const unary = <T extends Value>(name: string, kind: Kind<T>, op: (x: T) => Value): ExtensionFunction => ({
  name,
  style: 'method',
  arity: 1,
  apply: ([x]) => guarded(name, () => op(expect(x!, kind))),
});

const binary = <T extends Value, U extends Value>(
  name: string,
  left: Kind<T>,
  right: Kind<U>,
  op: (x: T, y: U) => Value,
): ExtensionFunction => ({
  name,
  style: 'method',
  arity: 2,
  apply: ([x, y]) => guarded(name, () => op(expect(x!, left), expect(y!, right))),
});

const FUNCTIONS: readonly ExtensionFunction[] = [
  constructor('ip', (s) => IpAddr.parse(s)),
  constructor('decimal', (s) => Decimal.parse(s)),
  constructor('datetime', (s) => Datetime.parse(s)),
  constructor('duration', (s) => Duration.parse(s)),

  unary('isIpv4', IP, (a) => a.isIpv4()),
  unary('isIpv6', IP, (a) => a.isIpv6()),
  unary('isLoopback', IP, (a) => a.isLoopback()),
  unary('isMulticast', IP, (a) => a.isMulticast()),
  binary('isInRange', IP, IP, (a, range) => a.isInRange(range)),

  binary('lessThan', DEC, DEC, (a, b) => a.compare(b) < 0),
  binary('lessThanOrEqual', DEC, DEC, (a, b) => a.compare(b) <= 0),
  binary('greaterThan', DEC, DEC, (a, b) => a.compare(b) > 0),
  binary('greaterThanOrEqual', DEC, DEC, (a, b) => a.compare(b) >= 0),

  binary('offset', DT, DUR, (t, d) => t.offset(d)),
  binary('durationSince', DT, DT, (t, u) => t.durationSince(u)),
  unary('toDate', DT, (t) => t.toDate()),
  unary('toTime', DT, (t) => t.toTime()),

  unary('toMilliseconds', DUR, (d) => d.toMilliseconds()),
  unary('toSeconds', DUR, (d) => d.toSeconds()),
  unary('toMinutes', DUR, (d) => d.toMinutes()),
  unary('toHours', DUR, (d) => d.toHours()),
  unary('toDays', DUR, (d) => d.toDays()),
];

const BY_NAME: ReadonlyMap<string, ExtensionFunction> = new Map(FUNCTIONS.map((f) => [f.name, f]));

export function extensionFunction(name: string): ExtensionFunction | undefined {
  return BY_NAME.get(name);
}

/** Every extension function and method, in a stable order. */
export function extensionFunctions(): readonly ExtensionFunction[] {
  return FUNCTIONS;
}

/**
 * Applies `fn` after checking the argument count. Arguments are evaluated first, so an error in
 * one of them wins; a wrong count is then an evaluation error of the policy, worded as Cedar's.
 */
export function applyExtension(fn: ExtensionFunction, args: readonly Value[]): Value {
  if (args.length !== fn.arity) {
    throw new EvalError(
      'EVAL_ARITY',
      `wrong number of arguments provided to extension function \`${fn.name}\`: expected ${fn.arity}, got ${args.length}`,
    );
  }
  return fn.apply(args);
}
