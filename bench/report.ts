import fs from 'node:fs/promises';
import path from 'node:path';
import type { DriverBench } from './drivers.ts';
import { cpuTableLines, loadTableLines, type LoadTable } from './load.ts';
import { progress } from './stats.ts';

export type Scenario = Record<string, number>;

export interface BenchResult {
  date: string;
  quick: boolean;
  function: string;
  driver: string;
  template: { id: string; build_ms: number; image_bytes: number };
  scenarios: Record<string, Scenario>;
  ratios: Record<string, number>;
  memory: { idle_sandbox_mb: number | null; idle_sandbox_rss_mb: number | null };
  [extra: string]: unknown;
}

const LATENCY_KEYS = ['n', 'p50_ms', 'p99_ms', 'mean_ms', 'min_ms', 'max_ms'];

/** The Markdown table: the same numbers as the JSON, nothing recomputed. */
export function table(result: BenchResult): string {
  const rows = [
    `snapfn bench ${result.date} (${result.quick ? 'quick' : 'full'}; function ${result.function}; driver ${result.driver}${result.runsc ? `, runsc ${result.runsc}` : ''})`,
    '',
    '| scenario | n | p50 ms | p99 ms | mean ms | other |',
    '|---|---|---|---|---|---|',
  ];
  for (const [name, s] of Object.entries(result.scenarios)) {
    const other = Object.entries(s)
      .filter(([k]) => !LATENCY_KEYS.includes(k))
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    rows.push(`| ${name} | ${s.n ?? ''} | ${s.p50_ms ?? ''} | ${s.p99_ms ?? ''} | ${s.mean_ms ?? ''} | ${other} |`);
  }
  rows.push('', '| ratio (p50 / p50) | value |', '|---|---|', ...Object.entries(result.ratios).map(([k, v]) => `| ${k} | ${v} |`));
  rows.push('', `memory per idle pre-restored sandbox: ${result.memory.idle_sandbox_mb} MB PSS (${result.memory.idle_sandbox_rss_mb} MB RSS)`);
  rows.push(`template: build ${result.template.build_ms} ms, image ${(result.template.image_bytes / 1048576).toFixed(1)} MiB`);
  if (result.load) rows.push('', '### Load (autocannon, closed loop; rps and p50 / p99 ms)', '', ...loadTableLines(result.load as LoadTable), '', '| ratio | value |', '|---|---|', ...Object.entries((result.load_ratios ?? {}) as Record<string, number>).map(([k, v]) => `| ${k} | ${v} |`), '', '#### CPU ms per request (this process: gateway and autocannon; sandboxes: Sentry, gofer, guest)', '', ...cpuTableLines(result.load as LoadTable));
  if (result.uffd) rows.push('', '### UFFD page server', '', '```json', JSON.stringify(result.uffd, null, 2), '```');
  if (result.drivers) rows.push('', ...driversTable(result.drivers as Record<string, DriverBench>));
  return rows.join('\n');
}

/** SNAPFN_BENCH_DRIVERS columns (bench/drivers.ts), engine level, beside the main run's driver. */
export function driversTable(drivers: Record<string, DriverBench>): string[] {
  const names = Object.keys(drivers);
  const row = (label: string, pick: (d: DriverBench) => string | number) => `| ${label} | ${names.map((n) => pick(drivers[n]!)).join(' | ')} |`;
  return [
    '### Other drivers (engine level, then HTTP; SNAPFN_BENCH_DRIVERS)',
    '',
    `| | ${names.map((n) => `${n}/${drivers[n]!.platform}`).join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
    row('template build ms (first, incl. one-off prep)', (d) => d.template_build_ms),
    row('template build ms (network egress, after)', (d) => d.template_build_egress_ms),
    row('template image MiB', (d) => (d.image_bytes / 1048576).toFixed(1)),
    row('first request ms', (d) => d.first_request_ms),
    row('restore per request p50 / p99 ms', (d) => `${d.restore.p50_ms} / ${d.restore.p99_ms} (n=${d.restore.n})`),
    row('  restore phase / handler phase p50 ms', (d) => `${d.restore_phase_p50_ms} / ${d.handler_phase_p50_ms}`),
    row('keepWarm reuse p50 / p99 ms', (d) => `${d.keep_warm.p50_ms} / ${d.keep_warm.p99_ms} (n=${d.keep_warm.n})`),
    row('cold boot (no snapshot) p50 / p99 ms', (d) => (d.cold_boot ? `${d.cold_boot.p50_ms} / ${d.cold_boot.p99_ms} (n=${d.cold_boot.n})` : '')),
    row('cold boot / restore (p50)', (d) => d.cold_boot_over_restore ?? ''),
    row('HTTP: fn deploy to first answer ms', (d) => d.http?.deploy_ms ?? ''),
    row('HTTP: restore per request p50 / p99 ms', (d) => (d.http ? `${d.http.restore.p50_ms} / ${d.http.restore.p99_ms} (n=${d.http.restore.n})` : '')),
    row('HTTP: keepWarm reuse p50 / p99 ms', (d) => (d.http ? `${d.http.keep_warm.p50_ms} / ${d.http.keep_warm.p99_ms} (n=${d.http.keep_warm.n})` : '')),
  ];
}

export async function writeResults(dir: string, result: BenchResult): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const json = JSON.stringify(result, null, 2);
  const md = `# ${table(result)}\n`;
  await fs.writeFile(path.join(dir, 'latest.json'), json);
  await fs.writeFile(path.join(dir, 'latest.md'), md);
  progress(`results written to ${path.relative(process.cwd(), dir)}/latest.{json,md}`);
}
