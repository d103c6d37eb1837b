import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/agent/metrics.js';

describe('Metrics', () => {
  it('renders counters, gauges and histograms in Prometheus text format', () => {
    const m = new Metrics();
    m.inc('ztedge_commands_total', 'Commands by outcome', { decision: 'allow' });
    m.inc('ztedge_commands_total', 'Commands by outcome', { decision: 'allow' });
    m.inc('ztedge_commands_total', 'Commands by outcome', { decision: 'deny' });
    let pending = 0;
    m.collect(() => m.set('ztedge_pending_approvals', 'Commands held for approval', pending));
    pending = 4;
    m.observe('ztedge_decision_seconds', 'Decision latency', 0.0003);
    m.observe('ztedge_decision_seconds', 'Decision latency', 0.02);
    const text = m.render();
    expect(text).toContain('# TYPE ztedge_commands_total counter\nztedge_commands_total{decision="allow"} 2\nztedge_commands_total{decision="deny"} 1');
    expect(text).toContain('ztedge_pending_approvals 4');
    expect(text).toContain('ztedge_decision_seconds_bucket{le="0.0005"} 1');
    expect(text).toContain('ztedge_decision_seconds_bucket{le="0.025"} 2');
    expect(text).toContain('ztedge_decision_seconds_bucket{le="+Inf"} 2');
    expect(text).toContain('ztedge_decision_seconds_count 2');
    expect(text).toMatch(/ztedge_decision_seconds_sum 0\.0203/);
  });

  it('escapes label values and refuses a type change', () => {
    const m = new Metrics();
    m.inc('x_total', 'x', { reason: 'a "quoted"\nvalue' });
    expect(m.render()).toContain('x_total{reason="a \\"quoted\\"\\nvalue"} 1');
    expect(() => m.set('x_total', 'x', 1)).toThrow(TypeError);
  });
});
