// Counters, gauges and latency histograms, rendered in the Prometheus text exposition format.
// Deliberately tiny: the agent exposes a few dozen series and must not pull in a metrics stack.

type Labels = Record<string, string>;

interface Series {
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: Map<string, number>;
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

  observe(name: string, help: string, seconds: number, labels: Labels = {}): void {
    const s = this.get(name, help, 'histogram');
    for (const le of BUCKETS) {
      if (seconds <= le) {
        const key = labelKey({ ...labels, le: String(le) });
        s.values.set(key, (s.values.get(key) ?? 0) + 1);
      }
    }
    const inf = labelKey({ ...labels, le: '+Inf' });
    s.values.set(inf, (s.values.get(inf) ?? 0) + 1);
    const sum = '_sum' + labelKey(labels);
    s.values.set(sum, (s.values.get(sum) ?? 0) + seconds);
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
      for (const [key, value] of s.values) {
        if (s.type !== 'histogram') lines.push(`${name}${key} ${value}`);
        else if (key.startsWith('_sum')) {
          const labels = key.slice(4);
          lines.push(`${name}_sum${labels} ${value}`);
          const count = s.values.get(labels === '' ? labelKey({ le: '+Inf' }) : labels.replace(/}$/, ',le="+Inf"}')) ?? 0;
          lines.push(`${name}_count${labels} ${count}`);
        } else lines.push(`${name}_bucket${key} ${value}`);
      }
    }
    return lines.join('\n') + '\n';
  }

  private get(name: string, help: string, type: Series['type']): Series {
    let s = this.series.get(name);
    if (s === undefined) {
      if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new RangeError(`bad metric name ${name}`);
      this.series.set(name, (s = { help, type, values: new Map() }));
    } else if (s.type !== type) throw new TypeError(`metric ${name} is a ${s.type}`);
    return s;
  }
}

function labelKey(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return '{' + entries.map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',') + '}';
}
