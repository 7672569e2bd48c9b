// POST /v1/eval per language, one evaluation a second, with the server's
// default warm pool (SNAPFN_EVAL_POOL_SIZE, 1 per language): the rate at
// which a pooled sandbox is back before the next request, so every sample is
// a pool hit unless a refill falls behind (`pool_hits` says how many were).
import type { GatewayClient } from './gateway-client.ts';
import type { Scenario } from './report.ts';
import { summarize, timed } from './stats.ts';

const SNIPPETS = {
  javascript: { code: '1+1', ok: (r: any) => r?.result === 2 },
  python: { code: '1+1', ok: (r: any) => r?.result === 2 },
  bash: { code: 'echo 2', ok: (r: any) => r?.stdout === '2\n' },
} as const;
export type EvalLanguage = keyof typeof SNIPPETS;

/** The snippet an eval row runs in `language` and how its answer is checked. */
export function evalSnippet(language: EvalLanguage): { code: string; ok: (r: any) => boolean } {
  return SNIPPETS[language];
}

const INTERVAL_MS = 1000;

/** A fixed cadence, start to start: each call waits for the next slot `intervalMs` after the last (at once when late). */
export function pacer(intervalMs: number): () => Promise<void> {
  let next = performance.now() + intervalMs;
  return async () => {
    const wait = next - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    next = Math.max(next + intervalMs, performance.now());
  };
}

async function oneLanguage(client: GatewayClient, language: EvalLanguage, n: number): Promise<Scenario> {
  const { code, ok } = SNIPPETS[language];
  const evaluate = async () => {
    const r = await client.post('/v1/eval', { language, code });
    if (r.status !== 200 || r.json?.error || !ok(r.json)) throw new Error(`eval ${language} failed: ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
    return r.json.timings as { sandbox?: string; handlerMs?: number; startMs?: number; exitMs?: number } | undefined;
  };
  // Unmeasured: the pool may still be filling after the template build.
  await evaluate();
  const samples: number[] = [];
  let poolHits = 0;
  // Of the pool hits: the round trip into the sandbox, and inside it up to the runtime's start and from the result to the end.
  const phases = { handler: [] as number[], start: [] as number[], exit: [] as number[] };
  const slot = pacer(INTERVAL_MS);
  for (let i = 0; i < n; i++) {
    await slot();
    const [ms, timings] = await timed(evaluate);
    samples.push(ms);
    if (timings?.sandbox !== 'pool') continue;
    poolHits++;
    if (timings.handlerMs !== undefined) phases.handler.push(timings.handlerMs);
    if (timings.startMs !== undefined) phases.start.push(timings.startMs);
    if (timings.exitMs !== undefined) phases.exit.push(timings.exitMs);
  }
  const p50 = (values: number[]) => (values.length ? summarize(values).p50_ms : NaN);
  return { ...summarize(samples), pool_hits: poolHits, hit_handler_p50_ms: p50(phases.handler), hit_start_p50_ms: p50(phases.start), hit_exit_p50_ms: p50(phases.exit) };
}

/** `eval_<language>` scenarios through the gateway, or undefined when /v1/eval is not served. */
export async function benchEval(client: GatewayClient, n: number, progress: (message: string) => void): Promise<Record<string, Scenario> | undefined> {
  const probe = await client.post('/v1/eval', { language: 'bash', code: 'true' });
  if (probe.status === 404) return undefined;
  const scenarios: Record<string, Scenario> = {};
  for (const language of Object.keys(SNIPPETS) as EvalLanguage[]) {
    progress(`  ${language}: ${n} evaluations, one a second`);
    scenarios[`eval_${language}`] = await oneLanguage(client, language, n);
  }
  return scenarios;
}
