/**
 * A small Prometheus text-format registry: counters, histograms, and gauges
 * read at scrape time (after the registry's collectors, which may fetch
 * what the gauges read, e.g. from Redis). Small enough that a client
 * library would be the larger part of it.
 */
type Labels = Record<string, string>;

const DEFAULT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

function labelKey(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
    .join(',');
}

function fmt(name: string, key: string, value: number): string {
  return `${name}${key ? `{${key}}` : ''} ${Number.isFinite(value) ? value : 0}`;
}

export class Counter {
  readonly #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  render(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`, ...[...this.#values].map(([k, v]) => fmt(this.name, k, v))];
  }
}

export class Histogram {
  readonly #series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[] = DEFAULT_BUCKETS) {}

  observe(labels: Labels, value: number): void {
    const key = labelKey(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.#series) {
      const sep = key ? `${key},` : '';
      this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      lines.push(fmt(`${this.name}_sum`, key, s.sum), fmt(`${this.name}_count`, key, s.count));
    }
    return lines;
  }
}

/** A gauge whose samples are read when /metrics is scraped. */
export class Gauge {
  constructor(readonly name: string, readonly help: string, readonly read: () => Array<[Labels, number]>) {}

  render(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, ...this.read().map(([l, v]) => fmt(this.name, labelKey(l), v))];
  }
}

export class MetricsRegistry {
  readonly #metrics: Array<Counter | Histogram | Gauge> = [];
  readonly #collectors: Array<() => Promise<void>> = [];

  /** Runs before every render; a collector handles its own failures and time limit. */
  collect(collector: () => Promise<void>): void {
    this.#collectors.push(collector);
  }

  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }

  histogram(name: string, help: string, buckets?: number[]): Histogram {
    return this.#add(new Histogram(name, help, buckets));
  }

  gauge(name: string, help: string, read: () => Array<[Labels, number]>): Gauge {
    return this.#add(new Gauge(name, help, read));
  }

  async render(): Promise<string> {
    await Promise.all(this.#collectors.map((c) => c()));
    return this.#metrics.flatMap((m) => m.render()).join('\n') + '\n';
  }

  #add<T extends Counter | Histogram | Gauge>(metric: T): T {
    this.#metrics.push(metric);
    return metric;
  }
}
