/**
 * A Cloudflare Workers module, unchanged from how it would run there:
 *   GET /fn/workers-greeter?name=Ada   -> {"message":"Hello, Ada!", ...}
 *   GET /fn/workers-greeter/visits     -> the visits this sandbox recorded
 * GREETING is an env binding (`fn deploy --env GREETING=Howdy`), and each
 * visit is recorded with ctx.waitUntil, after the response has gone out.
 * Sandboxes start fresh from the snapshot, so visits add up only while one
 * is kept warm (`--keep-warm`).
 */
import fs from 'node:fs/promises';

interface Env {
  GREETING?: string;
}

/** The parts of Workers' ExecutionContext and ScheduledController this module uses. */
interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}
interface ScheduledController {
  cron: string;
  scheduledTime: number;
}

interface Visit {
  name: string;
  at: string;
}

const VISITS = '/tmp/visits.jsonl';

async function recordVisit(visit: Visit): Promise<void> {
  await fs.appendFile(VISITS, JSON.stringify(visit) + '\n');
}

async function visits(): Promise<Visit[]> {
  const text = await fs.readFile(VISITS, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Visit);
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === '/visits') return Response.json({ visits: await visits() });
    if (url.pathname !== '/') return Response.json({ error: `no route for ${url.pathname}` }, { status: 404 });
    const name = url.searchParams.get('name')?.trim() || 'world';
    // The caller does not wait for the bookkeeping.
    ctx.waitUntil(recordVisit({ name, at: new Date().toISOString() }));
    return Response.json({ message: `${env.GREETING ?? 'Hello'}, ${name}!`, runtime: 'workers' });
  },

  // What a cron schedule calls (fn schedule workers-greeter '*/5 * * * *').
  async scheduled(controller: ScheduledController, env: Env): Promise<void> {
    const all = await visits();
    console.log(`scheduled ${controller.cron}: ${all.length} visits so far, greeting ${env.GREETING ?? 'Hello'}`);
  },
};

// One sandbox stays ready after traffic stops (the default, 0, scales to zero).
export const config = { minWarm: 1 };
