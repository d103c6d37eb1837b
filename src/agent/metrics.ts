// Counters, gauges and latency histograms, rendered in the Prometheus text exposition format.
// Deliberately tiny: the agent exposes a few dozen series and must not pull in a metrics stack.

type Labels = Record<string, string>;

interface Series {
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  /** Counters and gauges, by rendered label set. */
  values: Map<string, number>;
  /** Histograms, by rendered label set (without `le`). */
  histograms: Map<string, Histogram>;
}

/** One label set's observations: a count per bucket (not cumulative), their count and sum. */
interface Histogram {
  buckets: number[];
  count: number;
  sum: number;
}

/** Latency buckets in seconds, from 50 µs to 5 s. */
const BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics {
  private readonly series = new Map<string, Series>();
  private readonly collectors: Array<() => void> = [];

  inc(name: string, help: string, labels: Labels = {}, by = 1): void {
    const s = this.get(name, help, 'counter');
    const key = labelKey(labels);
    s.values.set(key, (s.values.get(key) ?? 0) + by);
  }

  set(name: string, help: string, value: number, labels: Labels = {}): void {
    this.get(name, help, 'gauge').values.set(labelKey(labels), value);
  }

  /** Counted into its one bucket (cumulated when rendered): no label strings are built per observation. */
  observe(name: string, help: string, seconds: number, labels: Labels = {}): void {
    const s = this.get(name, help, 'histogram');
    const key = labelKey(labels);
    let h = s.histograms.get(key);
    if (h === undefined) s.histograms.set(key, (h = { buckets: new Array<number>(BUCKETS.length).fill(0), count: 0, sum: 0 }));
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    if (i < BUCKETS.length) h.buckets[i]!++;
    h.count++;
    h.sum += seconds;
  }

  /** Registers a callback that refreshes gauges just before each render. */
  collect(fn: () => void): void {
    this.collectors.push(fn);
  }

  render(): string {
    for (const fn of this.collectors) fn();
    const lines: string[] = [];
    for (const [name, s] of [...this.series].sort(([a], [b]) => a.localeCompare(b))) {
      lines.push(`# HELP ${name} ${s.help}`, `# TYPE ${name} ${s.type}`);
      for (const [key, value] of s.values) lines.push(`${name}${key} ${value}`);
      for (const [key, h] of s.histograms) {
        let cumulative = 0;
        BUCKETS.forEach((le, i) => {
          cumulative += h.buckets[i]!;
          lines.push(`${name}_bucket${withLe(key, String(le))} ${cumulative}`);
        });
        lines.push(`${name}_bucket${withLe(key, '+Inf')} ${h.count}`, `${name}_sum${key} ${h.sum}`, `${name}_count${key} ${h.count}`);
      }
    }
    return lines.join('\n') + '\n';
  }

  private get(name: string, help: string, type: Series['type']): Series {
    let s = this.series.get(name);
    if (s === undefined) {
      if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new RangeError(`bad metric name ${name}`);
      this.series.set(name, (s = { help, type, values: new Map(), histograms: new Map() }));
    } else if (s.type !== type) throw new TypeError(`metric ${name} is a ${s.type}`);
    return s;
  }
}

function labelKey(labels: Labels): string {
  let key = '';
  for (const k in labels) key += `${key === '' ? '{' : ','}${k}="${escapeLabel(labels[k]!)}"`;
  return key === '' ? '' : `${key}}`;
}

/** A rendered label set with `le` added last. */
function withLe(key: string, le: string): string {
  return key === '' ? `{le="${le}"}` : `${key.slice(0, -1)},le="${le}"}`;
}

function escapeLabel(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value;
}
