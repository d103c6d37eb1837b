// Builds the Cedar request for a verified command: principal from the issuer's bundle entry,
// action and resource from the signed claims, and the context the agent vouches for
// (args, now, posture, online, bundle, source, and attestation when the device measures itself).
// Pure.
import type { AttestationFacts } from '../attest/service.js';
import type { CommandArgs, ArgValue } from '../envelope/command.js';
import { CedarRecord, CedarSet, Datetime, type Entities, EntityUid, I64_MAX, I64_MIN, parseEntityUid, type Value } from '../policy/index.js';
import type { AuthzRequest } from '../policy/index.js';
import type { Posture } from './config.js';
import { ZtedgeError } from '../errors.js';

export type CommandSource = 'mqtt' | 'http';

export interface ContextFacts {
  nowMs: number;
  posture: Posture;
  online: boolean;
  bundle: { revision: number; stale: boolean };
  source: CommandSource;
  /** Present when attestation is configured: `context.attestation`. */
  attestation?: AttestationFacts;
}

export class RequestBuildError extends ZtedgeError<'ARGS_INVALID' | 'RESOURCE_INVALID' | 'ACTION_INVALID'> {}

/** Action ids are Cedar `Action::"<id>"`; keep them to a safe alphabet (they also name MQTT topics). */
const ACTION_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const MAX_ARGS_DEPTH = 16;

export function actionUid(action: string): EntityUid {
  if (!ACTION_ID.test(action)) throw new RequestBuildError('ACTION_INVALID', 'action id may hold letters, digits and _ . : - only');
  return new EntityUid('Action', action);
}

export function resourceUid(resource: string): EntityUid {
  try {
    const lit = parseEntityUid(resource);
    return new EntityUid(lit.type, lit.id);
  } catch {
    throw new RequestBuildError('RESOURCE_INVALID', `resource ${JSON.stringify(resource.slice(0, 80))} is not a Cedar entity uid`);
  }
}

/** The entity that stands for this device in a bundle: `Device::"<device id>"`. */
export function deviceUid(deviceId: string): EntityUid {
  return new EntityUid('Device', deviceId);
}

/**
 * Whether a command's resource is this device's to act on: the device itself, or an entity the
 * bundle declares as hosted on it (a descendant of `Device::"<device id>"` in its entities). A
 * command naming anything else is refused before any policy runs: a permit for another machine
 * must not move this one.
 */
export function isHostedOn(entities: Entities, resource: EntityUid, deviceId: string): boolean {
  return entities.isIn(resource, deviceUid(deviceId));
}

export function buildRequest(principal: EntityUid, action: string, resource: string, args: CommandArgs, facts: ContextFacts): AuthzRequest {
  return { principal, action: actionUid(action), resource: resourceUid(resource), context: standardContext(args, facts) };
}

/**
 * The request asking whether `approver` may approve a held command: action `Action::"approve"`
 * on the command's resource, with the command's own args and `context.command` (its action and
 * principal), so policies can say who approves what.
 */
export function buildApprovalRequest(
  approver: EntityUid,
  held: { principal: string; action: string; resource: string },
  args: CommandArgs,
  facts: ContextFacts,
): AuthzRequest {
  const base = standardContext(args, facts);
  const command = CedarRecord.fromEntries([
    ['action', held.action],
    ['principal', resourceUid(held.principal)],
  ]);
  return {
    principal: approver,
    action: new EntityUid('Action', 'approve'),
    resource: resourceUid(held.resource),
    context: CedarRecord.fromEntries([...base.entries(), ['command', command]]),
  };
}

function standardContext(args: CommandArgs, facts: ContextFacts): CedarRecord {
  return CedarRecord.fromEntries([
    ['args', argsRecord(args, 'args', 0)],
    ['now', Datetime.fromEpochMs(BigInt(facts.nowMs))],
    ['posture', facts.posture],
    ['online', facts.online],
    ['bundle', CedarRecord.fromEntries([['revision', BigInt(facts.bundle.revision)], ['stale', facts.bundle.stale]])],
    ['source', facts.source],
    ...(facts.attestation === undefined ? [] : [['attestation', attestationRecord(facts.attestation)] as const]),
  ]);
}

/**
 * `context.attestation`: { mismatches: Set<String> of paths, composite, referenced, rootOfTrust,
 * error? } — so a policy can say `context.attestation.mismatches.contains("/etc/robot/safety-zones.conf")`.
 */
function attestationRecord(facts: AttestationFacts): CedarRecord {
  return CedarRecord.fromEntries([
    ['mismatches', CedarSet.of(facts.mismatches)],
    ['composite', facts.composite],
    ['referenced', facts.referenced],
    ['rootOfTrust', facts.rootOfTrust],
    ...(facts.error === null ? [] : [['error', facts.error] as const]),
  ]);
}

function argsRecord(args: CommandArgs, path: string, depth: number): CedarRecord {
  return CedarRecord.fromEntries(Object.entries(args).map(([k, v]) => [k, argValue(v, `${path}.${k}`, depth + 1)] as const));
}

/** CBOR args → Cedar values. Cedar has no floats: a non-integer number is refused, not rounded. */
function argValue(v: ArgValue, path: string, depth: number): Value {
  if (depth > MAX_ARGS_DEPTH) throw new RequestBuildError('ARGS_INVALID', `${path} is nested too deeply`);
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') {
    if (v < I64_MIN || v > I64_MAX) throw new RequestBuildError('ARGS_INVALID', `${path} is outside the 64-bit integer range`);
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new RequestBuildError('ARGS_INVALID', `${path} is not an integer (Cedar has no floating point)`);
    return BigInt(v);
  }
  if (Array.isArray(v)) return CedarSet.of(v.map((item, i) => argValue(item, `${path}[${i}]`, depth + 1)));
  return argsRecord(v as CommandArgs, path, depth);
}

/**
 * JSON-safe copy of args for executors and audit: integers beyond 2^53 become decimal strings.
 * Records are rebuilt without a prototype, so no key can reach one.
 */
export function argsToJson(args: CommandArgs): unknown {
  const convert = (v: ArgValue): unknown => {
    if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    if (Array.isArray(v)) return v.map(convert);
    if (typeof v === 'object' && v !== null) {
      const record = Object.create(null) as Record<string, unknown>;
      for (const [k, x] of Object.entries(v)) record[k] = convert(x);
      return record;
    }
    return v;
  };
  return convert(args);
}
