// A compiled, indexed policy set. Policies are compiled once here. The index narrows a request
// to the policies whose scope could match it: first by action (exact uid, or a group the
// request's action is in, or "any action"), then by one anchor from the principal or resource
// constraint (`==` an entity, or `in` a group the request entity must be or descend from). A policy is never dropped by the index unless its scope cannot match, and the
// action candidates are exact, so their action constraint need not be tested again.
import type { EntityUidLit, PolicyAst, ScopeConstraint } from './ast.js';
import { compilePolicy } from './compile.js';
import type { CompiledPolicy } from './compile.js';
import type { Entities } from './entities.js';
import { parsePolicies } from './parser.js';
import type { ParseOptions } from './parser.js';
import { EntityUid } from './value.js';
import { ZtedgeError } from '../errors.js';

export class PolicySetError extends ZtedgeError<'POLICY_DUPLICATE_ID'> {
  constructor(readonly policyId: string) {
    super('POLICY_DUPLICATE_ID', `duplicate policy id ${JSON.stringify(policyId)}`);
  }
}

/**
 * The policies a request with a given action must evaluate, each filed under exactly one
 * anchor taken from its scope, so a request visits only the buckets its entities can reach.
 */
export interface ActionCandidates {
  /** Policies with `principal == P`, by P's key. */
  readonly byPrincipal: ReadonlyMap<string, readonly CompiledPolicy[]>;
  /** Policies with `resource == R` (and no `principal ==`), by R's key. */
  readonly byResource: ReadonlyMap<string, readonly CompiledPolicy[]>;
  /** Policies with `principal in G` or `principal is T in G` (and no `==`), by G's key. */
  readonly byPrincipalGroup: ReadonlyMap<string, readonly CompiledPolicy[]>;
  /** Policies with `resource in G` or `resource is T in G` (and no `==`), by G's key. */
  readonly byResourceGroup: ReadonlyMap<string, readonly CompiledPolicy[]>;
  /** Every other candidate. */
  readonly rest: readonly CompiledPolicy[];
}

/** The group a `principal`/`resource` scope requires membership of, if any. */
function groupOf(scope: ScopeConstraint): EntityUidLit | undefined {
  return scope.op === 'in' ? scope.entity : scope.op === 'is' ? scope.in : undefined;
}

// Request actions come from outside: cap the per-store memo so unknown actions cannot grow it.
const MAX_MEMOIZED_ACTIONS = 4096;

const keyOf = (lit: EntityUidLit): string => new EntityUid(lit.type, lit.id).key;

function push<K>(map: Map<K, CompiledPolicy[]>, key: K, p: CompiledPolicy): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [p]);
  else list.push(p);
}

export class PolicySet {
  /** All policies, in order (ids `policy0..N` in source order for parsed text). */
  readonly policies: readonly CompiledPolicy[];
  readonly #byId: ReadonlyMap<string, CompiledPolicy>;
  /** Policies with `action == A`, by A's key. */
  readonly #byActionEq: ReadonlyMap<string, readonly CompiledPolicy[]>;
  /** Policies with `action in [.., A, ..]`, under each A's key. */
  readonly #byActionIn: ReadonlyMap<string, readonly CompiledPolicy[]>;
  readonly #anyAction: readonly CompiledPolicy[];
  readonly #withoutAncestors = new Map<string, ActionCandidates>();
  readonly #perStore = new WeakMap<Entities, Map<string, ActionCandidates>>();

  private constructor(asts: readonly PolicyAst[]) {
    const byId = new Map<string, CompiledPolicy>();
    const byActionEq = new Map<string, CompiledPolicy[]>();
    const byActionIn = new Map<string, CompiledPolicy[]>();
    const anyAction: CompiledPolicy[] = [];
    const policies = asts.map((ast, i) => {
      if (byId.has(ast.id)) throw new PolicySetError(ast.id);
      const p = compilePolicy(ast, i);
      byId.set(ast.id, p);
      const action = ast.action;
      if (action.op === 'any') anyAction.push(p);
      else if (action.op === '==') push(byActionEq, keyOf(action.entity), p);
      else for (const key of new Set(action.entities.map(keyOf))) push(byActionIn, key, p);
      return p;
    });
    this.policies = Object.freeze(policies);
    this.#byId = byId;
    this.#byActionEq = byActionEq;
    this.#byActionIn = byActionIn;
    this.#anyAction = anyAction;
  }

  /** Parses and compiles Cedar text; throws PolicyParseError or PolicySetError. */
  static fromText(text: string, opts?: ParseOptions): PolicySet {
    return new PolicySet(parsePolicies(text, opts));
  }

  /** Several texts as one set; ids continue across them (`policy0..N` in order). */
  static fromSources(sources: ReadonlyArray<{ text: string; source: string }>, opts?: ParseOptions): PolicySet {
    const asts: PolicyAst[] = [];
    for (const { text, source } of sources) {
      asts.push(...parsePolicies(text, { ...opts, source, startIndex: (opts?.startIndex ?? 0) + asts.length }));
    }
    return new PolicySet(asts);
  }

  static fromPolicies(asts: readonly PolicyAst[]): PolicySet {
    return new PolicySet(asts);
  }

  get size(): number {
    return this.policies.length;
  }

  get(id: string): CompiledPolicy | undefined {
    return this.#byId.get(id);
  }

  /**
   * The policies whose action constraint matches this action, given the store's action
   * hierarchy: exactly those, so callers need not test the action scope again. Memoized: for
   * an action without ancestors the answer does not depend on the store; otherwise per store
   * (stores are immutable).
   */
  candidatesFor(entities: Entities, action: EntityUid): ActionCandidates {
    const ancestors = entities.ancestorsOf(action);
    let memo = this.#withoutAncestors;
    if (ancestors.size > 0) {
      let storeMemo = this.#perStore.get(entities);
      if (storeMemo === undefined) {
        storeMemo = new Map();
        this.#perStore.set(entities, storeMemo);
      }
      memo = storeMemo;
    }
    let found = memo.get(action.key);
    if (found === undefined) {
      if (memo.size >= MAX_MEMOIZED_ACTIONS) memo.clear();
      found = this.#buildCandidates(action, ancestors);
      memo.set(action.key, found);
    }
    return found;
  }

  #buildCandidates(action: EntityUid, ancestors: ReadonlySet<string>): ActionCandidates {
    const chosen = new Set<CompiledPolicy>(this.#anyAction);
    for (const p of this.#byActionEq.get(action.key) ?? []) chosen.add(p);
    for (const key of [action.key, ...ancestors]) {
      for (const p of this.#byActionIn.get(key) ?? []) chosen.add(p);
    }
    const sorted = [...chosen].sort((a, b) => a.position - b.position);
    // With a group on both sides, file the policy under the group shared by fewer policies.
    const principalGroupSizes = new Map<string, number>();
    const resourceGroupSizes = new Map<string, number>();
    for (const p of sorted) {
      const pg = groupOf(p.ast.principal);
      const rg = groupOf(p.ast.resource);
      if (pg) principalGroupSizes.set(keyOf(pg), (principalGroupSizes.get(keyOf(pg)) ?? 0) + 1);
      if (rg) resourceGroupSizes.set(keyOf(rg), (resourceGroupSizes.get(keyOf(rg)) ?? 0) + 1);
    }
    const byPrincipal = new Map<string, CompiledPolicy[]>();
    const byResource = new Map<string, CompiledPolicy[]>();
    const byPrincipalGroup = new Map<string, CompiledPolicy[]>();
    const byResourceGroup = new Map<string, CompiledPolicy[]>();
    const rest: CompiledPolicy[] = [];
    for (const p of sorted) {
      const { principal, resource } = p.ast;
      const pg = groupOf(principal);
      const rg = groupOf(resource);
      if (principal.op === '==') push(byPrincipal, keyOf(principal.entity), p);
      else if (resource.op === '==') push(byResource, keyOf(resource.entity), p);
      else if (pg && (!rg || principalGroupSizes.get(keyOf(pg))! <= resourceGroupSizes.get(keyOf(rg))!)) {
        push(byPrincipalGroup, keyOf(pg), p);
      } else if (rg) push(byResourceGroup, keyOf(rg), p);
      else rest.push(p);
    }
    return { byPrincipal, byResource, byPrincipalGroup, byResourceGroup, rest };
  }
}
