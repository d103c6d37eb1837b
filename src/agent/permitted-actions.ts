// Which actions a bundle's permit policies can allow, named: from `action == Action::"x"`,
// `action in [...]` (with the action groups of the bundle's entities), and every action entity
// the bundle defines when a permit leaves the action open. The agent warns at activation about
// those it has no executor for: such a command is allowed, audited, and then fails NO_EXECUTOR.
import { readUnverifiedBundle } from '../bundle/sign.js';
import type { VerifiedBundle } from '../bundle/verify.js';
import { EntityUid } from '../policy/index.js';

/** The action approvals are checked against (request-context.ts): never executed. */
const APPROVAL_ACTION = 'approve';

export interface PermittedActions {
  /** Action ids some permit can allow, sorted. */
  actions: string[];
  /** Names (`@id`, else the policy id) of permits that allow any action. */
  anyAction: string[];
}

export function permittedActions(bundle: VerifiedBundle): PermittedActions {
  const defined = actionEntityIds(bundle);
  const named = new Set<string>();
  const anyAction: string[] = [];
  for (const policy of bundle.policies.policies) {
    if (policy.effect !== 'permit') continue;
    const scope = policy.ast.action;
    if (scope.op === 'any') {
      anyAction.push(policy.name ?? policy.id);
      for (const id of defined) named.add(id);
    } else if (scope.op === '==') {
      if (scope.entity.type === 'Action') named.add(scope.entity.id);
    } else {
      const groups = scope.entities.map((e) => new EntityUid(e.type, e.id));
      for (const group of groups) if (group.type === 'Action') named.add(group.id);
      for (const id of defined) {
        const uid = new EntityUid('Action', id);
        if (groups.some((group) => bundle.entities.isIn(uid, group))) named.add(id);
      }
    }
  }
  named.delete(APPROVAL_ACTION);
  return { actions: [...named].sort(), anyAction };
}

/** Ids of the `Action` entities in the bundle's entities (the store itself is not iterable). */
function actionEntityIds(bundle: VerifiedBundle): string[] {
  let list: unknown;
  try {
    list = JSON.parse(readUnverifiedBundle(bundle.bytes, bundle.bytes.length).payload.entities);
  } catch {
    return [];
  }
  if (!Array.isArray(list)) return [];
  const ids: string[] = [];
  for (const item of list) {
    const uid = (item as { uid?: { type?: unknown; id?: unknown } } | null)?.uid;
    if (uid?.type === 'Action' && typeof uid.id === 'string') ids.push(uid.id);
  }
  return ids;
}
