import { Lines, StackedBars, type Series } from './charts.tsx';
import { LATENCY_PATHS, type InvocationSeries, type LatencyPath } from './time-series.ts';

const PATH_LABEL: Record<LatencyPath, string> = { pool: 'pool hit', 'keep-warm': 'keepWarm', restore: 'restore', queued: 'queued' };
const PATH_SLOT: Record<LatencyPath, number> = { pool: 0, 'keep-warm': 2, restore: 4, queued: 5 };
const FAILURE_SLOTS = [1, 3, 7];
const MIN_WINDOW_MINUTES = 15;

/** The charts of one function over the series' window; re-fetched by console.js as a fragment. */
export function FunctionCharts({ series, name }: { series: InvocationSeries; name: string }) {
  // A fresh gateway's hour is mostly empty: show at least a quarter of it, and all of what it has.
  const window = Math.max(MIN_WINDOW_MINUTES, series.spanMinutes(name));
  const minutes = series.minutes(name, window);
  const x = minutes.map((m) => m.start);
  const outcomes = [...new Set(minutes.flatMap((m) => Object.keys(m.outcomes)))].sort((a, b) => (a === 'ok' ? -1 : b === 'ok' ? 1 : a.localeCompare(b)));
  const failures = outcomes.filter((o) => o !== 'ok');
  // ok is green; failure codes take the warm colors in turn.
  const byOutcome: Series[] = outcomes.map((outcome) => ({
    name: outcome,
    slot: outcome === 'ok' ? 0 : FAILURE_SLOTS[failures.indexOf(outcome) % FAILURE_SLOTS.length]!,
    values: minutes.map((m) => m.outcomes[outcome]),
  }));
  const paths = LATENCY_PATHS.filter((p) => minutes.some((m) => m.latency[p]));
  const quantile = (q: 'p50' | 'p99'): Series[] => paths.map((p) => ({ name: PATH_LABEL[p], slot: PATH_SLOT[p], values: minutes.map((m) => m.latency[p]?.[q]) }));
  const restore: Series[] = [
    { name: 'p50', slot: 4, values: minutes.map((m) => m.restore?.p50) },
    { name: 'p99', slot: 6, values: minutes.map((m) => m.restore?.p99) },
  ];
  return (
    <div class="charts">
      <p class="muted small span-all">{`The last ${window} minutes, per minute (UTC on the axes), as this gateway saw them since it started.`}</p>
      <StackedBars title="Invocations per minute, by outcome" x={x} series={byOutcome} />
      <Lines title="Latency p50 per minute, by path" x={x} series={quantile('p50')} />
      <Lines title="Latency p99 per minute, by path" x={x} series={quantile('p99')} />
      <Lines title="Restore time per minute (invocations that restored a sandbox)" x={x} series={restore} empty="No restores in this window: every invocation had a pooled or kept-warm sandbox." />
    </div>
  );
}
