// A deterministic robot-cell world for the policy benchmark: three lines of four cells, each cell
// with two arms, a conveyor, a gripper and a PLC; operators, supervisors, maintenance staff and
// AI agents in roles; a few hundred policies mixing per-cell, per-principal and global rules with
// conditions on arguments, time and posture; and requests drawn from a seeded PRNG.
import type { Context, EntityJson, OracleRequest } from '../test/policy/support/cedar-wasm.js';
import { seededRandom } from '../test/support/seeded-random.js';

interface Uid {
  type: string;
  id: string;
}

export interface RobotCellFixture {
  policies: string;
  policyCount: number;
  entities: EntityJson[];
  requests: OracleRequest[];
}

const LINES = ['L1', 'L2', 'L3'];
const CELLS_PER_LINE = 4;
const ZONES = ['A', 'B', 'C', 'D'];
const ACTION_GROUPS: Record<string, string[]> = {
  motion: ['move', 'set_speed', 'start', 'grip', 'release'],
  observe: ['read_status', 'read_log'],
  maintenance: ['calibrate', 'update_firmware'],
};
const ACTIONS = ['move', 'set_speed', 'start', 'stop', 'estop', 'grip', 'release', 'read_status', 'read_log', 'calibrate', 'update_firmware', 'override_limits'];
/** Request mix: routine motion and reads dominate, dangerous actions are rare. */
const ACTION_WEIGHTS: Record<string, number> = {
  move: 30,
  set_speed: 8,
  start: 8,
  stop: 6,
  estop: 2,
  grip: 10,
  release: 8,
  read_status: 15,
  read_log: 5,
  calibrate: 3,
  update_firmware: 2,
  override_limits: 3,
};

const ext = (fn: string, arg: string) => ({ __extn: { fn, arg } });
const ref = (u: Uid) => ({ __entity: { type: u.type, id: u.id } });

export function robotCellFixture(requestCount: number, seed = 20250314): RobotCellFixture {
  const random = seededRandom(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const choose = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const weighted = (weights: Record<string, number>): string => {
    const total = Object.values(weights).reduce((a, b) => a + b, 0);
    let r = random() * total;
    for (const [k, wgt] of Object.entries(weights)) {
      r -= wgt;
      if (r < 0) return k;
    }
    return Object.keys(weights)[0]!;
  };

  const entities: EntityJson[] = [];
  const add = (uid: Uid, attrs: Record<string, Context[string]> = {}, parents: Uid[] = [], tags?: Record<string, Context[string]>) => {
    const e: EntityJson = { uid, attrs, parents };
    if (tags !== undefined) e.tags = tags;
    entities.push(e);
    return uid;
  };

  // Actions and their groups.
  for (const g of Object.keys(ACTION_GROUPS)) add({ type: 'Action', id: g });
  for (const a of ACTIONS) {
    const groups = Object.entries(ACTION_GROUPS)
      .filter(([, members]) => members.includes(a))
      .map(([g]) => ({ type: 'Action', id: g }));
    add({ type: 'Action', id: a }, {}, groups);
  }

  // Roles.
  const roles = ['operator', 'supervisor', 'maintenance', 'ai-motion', 'ai-observer'].map((r) => add({ type: 'Role', id: r }));
  const [operatorRole, supervisorRole, maintenanceRole, motionRole, observerRole] = roles as [Uid, Uid, Uid, Uid, Uid];

  // Plant.
  interface Cell {
    uid: Uid;
    line: Uid;
    arms: Uid[];
    conveyor: Uid;
    gripper: Uid;
    plc: Uid;
    window: number;
  }
  const cells: Cell[] = [];
  for (const l of LINES) {
    const line = add({ type: 'Line', id: l }, { site: 'plant-north' });
    for (let c = 1; c <= CELLS_PER_LINE; c++) {
      const id = `${l}-C${c}`;
      const cell = add({ type: 'Cell', id }, { name: `cell ${id}` }, [line]);
      const arms = [1, 2].map((n) =>
        add(
          { type: 'Arm', id: `${id}-arm${n}` },
          { model: n === 1 ? 'KR-16' : 'UR10e', maxSpeed: n === 1 ? 1500 : 1000, allowedZones: ZONES.slice(0, int(1, 3)) },
          [cell],
          { calibrated: ext('datetime', '2025-03-01') },
        ),
      );
      const conveyor = add({ type: 'Conveyor', id: `${id}-conv` }, { maxSpeed: 800 }, [cell]);
      const gripper = add({ type: 'Gripper', id: `${id}-grip` }, { maxForce: ext('decimal', `${int(80, 150)}.0`) }, [cell]);
      const plc = add({ type: 'Plc', id: `${id}-plc` }, { vendor: 'siemens', net: ext('ip', `10.${LINES.indexOf(l) + 1}.${c}.0/24`) }, [cell]);
      cells.push({ uid: cell, line, arms, conveyor, gripper, plc, window: int(0, 23) });
    }
  }

  // People and agents.
  interface Actor {
    uid: Uid;
    cell: Cell | undefined;
    kind: 'operator' | 'supervisor' | 'maintenance' | 'agent';
  }
  const actors: Actor[] = [];
  for (let i = 0; i < 12; i++) {
    const cell = cells[i]!;
    actors.push({ uid: add({ type: 'Operator', id: `op${i}` }, { name: `Operator ${i}`, cell: ref(cell.uid) }, [operatorRole]), cell, kind: 'operator' });
  }
  for (let i = 0; i < 3; i++) {
    actors.push({ uid: add({ type: 'Operator', id: `sup${i}` }, { name: `Supervisor ${i}`, cell: ref({ type: 'Line', id: LINES[i]! }) }, [supervisorRole]), cell: undefined, kind: 'supervisor' });
  }
  for (let i = 0; i < 2; i++) {
    actors.push({ uid: add({ type: 'Operator', id: `mnt${i}` }, { name: `Maintenance ${i}` }, [maintenanceRole]), cell: undefined, kind: 'maintenance' });
  }
  for (let i = 0; i < 8; i++) {
    const cell = cells[(i * 3) % cells.length]!;
    const parents = i % 2 === 0 ? [motionRole, observerRole] : [motionRole];
    actors.push({
      uid: add({ type: 'Agent', id: `agent${i}` }, { model: 'motion-planner', maxSpeed: int(300, 900), cell: ref(cell.uid) }, parents),
      cell,
      kind: 'agent',
    });
  }

  // Policies.
  const policies: string[] = [];
  const uidText = (u: Uid) => `${u.type}::"${u.id}"`;
  policies.push(`@id("estop") @safety("true")
permit (principal, action == Action::"estop", resource)
when { principal is Operator || principal is Agent };`);
  policies.push(`@id("forbid-untrusted")
forbid (principal, action, resource)
when { context.posture == "untrusted" }
unless { action in [Action::"estop", Action::"stop", Action::"read_status"] };`);
  policies.push(`@id("forbid-stale-motion")
forbid (principal, action in Action::"motion", resource)
when { context.bundle.stale };`);
  policies.push(`@id("supervisor-observe") @cache_ttl("30s")
permit (principal in Role::"supervisor", action in Action::"observe", resource);`);
  policies.push(`@id("observer-read") @cache_ttl("30s")
permit (principal in Role::"ai-observer", action == Action::"read_status", resource);`);
  policies.push(`@id("forbid-offline-override")
forbid (principal, action == Action::"override_limits", resource)
unless { context.online };`);
  for (const l of LINES) {
    policies.push(`@id("supervisor-motion-${l}")
permit (principal in Role::"supervisor", action in Action::"motion", resource in Line::"${l}")
when { principal.cell == Line::"${l}" && context.posture == "trusted" };`);
    policies.push(`@id("override-${l}") @approval("2") @approvers("Role::\\"supervisor\\"")
permit (principal in Role::"supervisor", action == Action::"override_limits", resource in Line::"${l}")
when { principal.cell == Line::"${l}" && context.posture == "trusted" };`);
  }
  for (const cell of cells) {
    const c = uidText(cell.uid);
    const wEnd = (cell.window + 4) % 24;
    const window =
      cell.window < wEnd
        ? `context.now.toTime() >= duration("${cell.window}h") && context.now.toTime() < duration("${wEnd}h")`
        : `context.now.toTime() >= duration("${cell.window}h") || context.now.toTime() < duration("${wEnd}h")`;
    policies.push(`@id("run-${cell.uid.id}") @rate("60/60s")
permit (principal in Role::"operator", action in [Action::"start", Action::"stop", Action::"read_status"], resource in ${c})
when { principal.cell == ${c} };`);
    policies.push(`@id("jog-${cell.uid.id}") @rate("20/60s")
permit (principal in Role::"operator", action == Action::"move", resource in ${c})
when { principal.cell == ${c} && context.posture == "trusted" && context.args.speed <= 250 };`);
    policies.push(`@id("agent-${cell.uid.id}") @rate("20/60s") @cache_ttl("5s")
permit (principal in Role::"ai-motion", action in [Action::"move", Action::"set_speed", Action::"grip", Action::"release"], resource in ${c})
when {
  principal.cell == ${c} && context.posture == "trusted" &&
  context.args has speed && context.args.speed <= principal.maxSpeed &&
  (!(resource has allowedZones) || (context.args has zone && resource.allowedZones.contains(context.args.zone)))
};`);
    policies.push(`@id("maintenance-${cell.uid.id}") @approval("1")
permit (principal in Role::"maintenance", action in Action::"maintenance", resource in ${c})
when { ${window} };`);
    policies.push(`@id("grip-force-${cell.uid.id}")
forbid (principal, action == Action::"grip", resource == ${uidText(cell.gripper)})
when { context.args has force && decimal(context.args.force).greaterThan(resource.maxForce) };`);
    policies.push(`@id("plc-net-${cell.uid.id}")
forbid (principal, action in Action::"maintenance", resource == ${uidText(cell.plc)})
unless { context.args has station && ip(context.args.station).isInRange(resource.net) };`);
    for (const arm of cell.arms) {
      policies.push(`@id("overspeed-${arm.id}")
forbid (principal, action in Action::"motion", resource == ${uidText(arm)})
when { context.args has speed && context.args.speed > resource.maxSpeed };`);
      policies.push(`@id("zone-${arm.id}")
forbid (principal, action == Action::"move", resource == ${uidText(arm)})
when { context.args has zone && !resource.allowedZones.contains(context.args.zone) };`);
      policies.push(`@id("calibration-${arm.id}")
forbid (principal, action in Action::"motion", resource == ${uidText(arm)})
when { resource.hasTag("calibrated") && context.now.durationSince(resource.getTag("calibrated")) > duration("90d") };`);
    }
    policies.push(`@id("conveyor-${cell.uid.id}")
forbid (principal, action == Action::"set_speed", resource == ${uidText(cell.conveyor)})
when { context.args.speed > resource.maxSpeed || context.args.speed < 0 };`);
  }
  for (const actor of actors) {
    const p = uidText(actor.uid);
    if (actor.kind === 'agent') {
      policies.push(`@id("agent-log-${actor.uid.id}") @rate("5/60s")
permit (principal == ${p}, action == Action::"read_log", resource in ${uidText(actor.cell!.line)});`);
      policies.push(`@id("agent-night-${actor.uid.id}")
forbid (principal == ${p}, action in Action::"motion", resource)
when { context.now.toTime() >= duration("2h") && context.now.toTime() < duration("4h") && context.args.speed > 100 };`);
      policies.push(`@id("agent-degraded-${actor.uid.id}")
forbid (principal == ${p}, action, resource)
when { context.posture == "degraded" && !(action in Action::"observe") };`);
    } else if (actor.kind === 'operator') {
      policies.push(`@id("op-grip-${actor.uid.id}") @approval("1")
permit (principal == ${p}, action in [Action::"grip", Action::"release"], resource == ${uidText(actor.cell!.gripper)})
when { context.posture == "trusted" && context.args has force && decimal(context.args.force).lessThanOrEqual(decimal("60.0")) };`);
      policies.push(`@id("op-log-${actor.uid.id}")
permit (principal == ${p}, action == Action::"read_log", resource in ${uidText(actor.cell!.uid)});`);
      policies.push(`@id("op-shift-${actor.uid.id}")
forbid (principal == ${p}, action in Action::"motion", resource)
unless { context.now.toTime() >= duration("${(actor.cell!.window + 6) % 24}h") || context.now.toTime() < duration("${(actor.cell!.window + 2) % 24}h") };`);
    }
  }

  // Requests: mostly principals acting in their own cell, with varied arguments, times, posture.
  const allResources = cells.flatMap((c) => [...c.arms, c.conveyor, c.gripper, c.plc]);
  const requests: OracleRequest[] = [];
  const weekStart = Date.UTC(2025, 2, 10);
  for (let i = 0; i < requestCount; i++) {
    const actor = choose(actors);
    const action = weighted(ACTION_WEIGHTS);
    const home = actor.cell ?? choose(cells);
    const resource = random() < 0.7 ? choose([...home.arms, home.conveyor, home.gripper, home.plc]) : choose(allResources);
    const args: Record<string, Context[string]> = {};
    if (random() < 0.9) args.speed = random() < 0.6 ? int(0, 300) : int(0, 2000);
    if (random() < 0.8) args.zone = choose(ZONES);
    if (random() < 0.5) args.force = `${int(10, 170)}.${int(0, 9)}`;
    if (random() < 0.3) args.station = `10.${int(1, 3)}.${int(1, 4)}.${int(1, 254)}`;
    const now = new Date(weekStart + Math.floor(random() * 7 * 86_400_000)).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const posture = random() < 0.85 ? 'trusted' : random() < 0.67 ? 'degraded' : 'untrusted';
    requests.push({
      principal: actor.uid,
      action: { type: 'Action', id: action },
      resource,
      context: {
        args,
        now: ext('datetime', now),
        posture,
        online: random() < 0.9,
        bundle: { revision: 42, stale: random() < 0.03 },
        source: random() < 0.8 ? 'mqtt' : 'http',
      },
    });
  }
  return { policies: policies.join('\n\n'), policyCount: policies.length, entities, requests };
}
