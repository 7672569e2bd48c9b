import { clock, ms } from './format.ts';

/*
 * Charts as SVG drawn on the server: no library, no script, nothing to load.
 * Colors come from classes (s0..s7 in console.css), so the page's CSP can
 * forbid inline styles. Every value is also a <title> (hover, screen readers).
 */

const W = 640;
const H = 200;
const PAD = { left: 52, right: 10, top: 10, bottom: 24 };
const PLOT_W = W - PAD.left - PAD.right;
const PLOT_H = H - PAD.top - PAD.bottom;

export interface Series {
  name: string;
  /** A color slot 0..7 (see console.css). */
  slot: number;
  /** One value per x position; undefined leaves a gap. */
  values: Array<number | undefined>;
}

export interface ChartProps {
  title: string;
  /** Epoch ms of each x position (minutes). */
  x: number[];
  series: Series[];
  format?: (value: number) => string;
  empty?: string;
}

/** 1, 2 or 5 times a power of ten, at least `max`: axis labels a person can read. */
function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

/** Counts on an axis may fall between integers (half of 5). */
function count(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function xAt(i: number, n: number): number {
  return PAD.left + (n <= 1 ? PLOT_W / 2 : (i * PLOT_W) / (n - 1));
}

function yAt(value: number, max: number): number {
  return PAD.top + PLOT_H - (value / max) * PLOT_H;
}

function Axes({ x, max, format }: { x: number[]; max: number; format: (v: number) => string }) {
  const ticks = [0, max / 2, max];
  const every = Math.max(1, Math.ceil(x.length / 6));
  return (
    <g class="axes">
      {ticks.map((t) => (
        <g>
          <line x1={PAD.left} x2={W - PAD.right} y1={yAt(t, max)} y2={yAt(t, max)} class="grid" />
          <text x={PAD.left - 6} y={yAt(t, max) + 4} text-anchor="end">
            {format(t)}
          </text>
        </g>
      ))}
      {x.map((t, i) =>
        i % every === 0 || i === x.length - 1 ? (
          <text x={xAt(i, x.length)} y={H - 6} text-anchor={i === 0 ? 'start' : i === x.length - 1 ? 'end' : 'middle'}>
            {clock(t)}
          </text>
        ) : null,
      )}
    </g>
  );
}

function Legend({ series }: { series: Series[] }) {
  return (
    <ul class="legend">
      {series.map((s) => (
        <li>
          <span class={`swatch s${s.slot}`}></span>
          {s.name}
        </li>
      ))}
    </ul>
  );
}

function hasData(series: Series[]): boolean {
  return series.some((s) => s.values.some((v) => v !== undefined && v > 0));
}

/** Stacked bars per minute (counts by outcome). */
export function StackedBars({ title, x, series, format = count, empty = 'No invocations in this window.' }: ChartProps) {
  const totals = x.map((_, i) => series.reduce((n, s) => n + (s.values[i] ?? 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const barW = Math.max(2, (PLOT_W / Math.max(1, x.length)) * 0.7);
  return (
    <figure class="chart" data-points={String(totals.filter((t) => t > 0).length)}>
      <figcaption>{title}</figcaption>
      {hasData(series) ? (
        <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={title}>
          <Axes x={x} max={max} format={format} />
          {x.map((t, i) => {
            let base = 0;
            return series.map((s) => {
              const v = s.values[i] ?? 0;
              if (v <= 0) return null;
              const y = yAt(base + v, max);
              const h = yAt(base, max) - y;
              base += v;
              return (
                <rect class={`point s${s.slot}`} x={xAt(i, x.length) - barW / 2} y={y} width={barW} height={Math.max(1, h)} data-value={String(v)}>
                  <title>{`${clock(t)} ${s.name}: ${format(v)}`}</title>
                </rect>
              );
            });
          })}
        </svg>
      ) : (
        <p class="empty">{empty}</p>
      )}
      <Legend series={series} />
    </figure>
  );
}

/** Lines with a dot per value (latency percentiles per minute); gaps where a minute had none. */
export function Lines({ title, x, series, format = ms, empty = 'No invocations in this window.' }: ChartProps) {
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter((v): v is number => v !== undefined))));
  const count = series.reduce((n, s) => n + s.values.filter((v) => v !== undefined).length, 0);
  return (
    <figure class="chart" data-points={String(count)}>
      <figcaption>{title}</figcaption>
      {count > 0 ? (
        <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={title}>
          <Axes x={x} max={max} format={format} />
          {series.map((s) => (
            <g class={`line s${s.slot}`}>
              {segments(s.values).map((segment) => (
                <polyline points={segment.map((i) => `${xAt(i, x.length).toFixed(1)},${yAt(s.values[i]!, max).toFixed(1)}`).join(' ')} />
              ))}
              {s.values.map((v, i) =>
                v === undefined ? null : (
                  <circle class="point" cx={xAt(i, x.length)} cy={yAt(v, max)} r="3" data-value={String(v)}>
                    <title>{`${clock(x[i]!)} ${s.name}: ${format(v)}`}</title>
                  </circle>
                ),
              )}
            </g>
          ))}
        </svg>
      ) : (
        <p class="empty">{empty}</p>
      )}
      <Legend series={series} />
    </figure>
  );
}

/** Runs of consecutive defined indexes: a line does not bridge a minute without data. */
function segments(values: Array<number | undefined>): number[][] {
  const runs: number[][] = [];
  let run: number[] = [];
  values.forEach((v, i) => {
    if (v === undefined) {
      if (run.length) runs.push(run);
      run = [];
    } else run.push(i);
  });
  if (run.length) runs.push(run);
  return runs.filter((r) => r.length > 1);
}

export interface Phase {
  name: string;
  ms: number;
  slot: number;
}

/** One invocation's phases as a single horizontal bar, each phase as wide as its share of the time. */
export function PhaseBar({ phases }: { phases: Phase[] }) {
  const total = phases.reduce((n, p) => n + Math.max(0, p.ms), 0);
  if (total <= 0) return <p class="empty">No phase timings for this invocation.</p>;
  let at = 0;
  return (
    <figure class="chart phases">
      <svg viewBox="0 0 640 36" role="img" aria-label="phase breakdown">
        {phases.map((p) => {
          const width = (Math.max(0, p.ms) / total) * 640;
          const x = at;
          at += width;
          return width <= 0 ? null : (
            <rect class={`point s${p.slot}`} x={x} y="4" width={Math.max(1, width)} height="28">
              <title>{`${p.name}: ${ms(p.ms)}`}</title>
            </rect>
          );
        })}
      </svg>
      <Legend series={phases.map((p) => ({ name: `${p.name} ${ms(p.ms)}`, slot: p.slot, values: [] }))} />
    </figure>
  );
}
