import type { Context, Hono } from 'hono';
import { echo, NotFoundError } from '../errors.ts';
import { withDeadline } from '../queue/deadline.ts';
import { assertOperator } from './auth.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { invocationView } from './invocation-view.ts';
import { redactor } from '../secrets/redact.ts';

const REDIS_DEADLINE_MS = 5000;

/**
 * `GET /v1/invocations/:id`: status and result of a queued invocation.
 *
 * Mounted before the operator-only guard of /v1: whoever may invoke a
 * public function asynchronously must be able to collect the result.
 * So a non-operator may read invocations of functions without
 * `requireAuth` whose ids it could only have learnt by starting them
 * (random or Idempotency-Key ids; not schedule runs, whose ids are
 * guessable). Everything else answers exactly like the guard would, so
 * the answer never tells whether an id exists.
 */
export function mountInvocationRoutes(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  app.get('/v1/invocations/:id', async (c) => {
    const id = c.req.param('id');
    const functions = deps.queue;
    const operator = isOperator(c, deps.config.apiKey);
    if (!functions) {
      if (!operator) assertOperator(c, deps.config.apiKey);
      throw new NotFoundError('this gateway runs without a queue: only queued invocations have a status');
    }
    const name = await withDeadline(`looking up invocation ${echo(id)}`, REDIS_DEADLINE_MS, () => functions.queue.functionOf(id));
    if (!operator) {
      const serving = name && !id.startsWith('repeat:') ? await deps.store.serving(name).catch(() => undefined) : undefined;
      if (!serving || serving.version.config.requireAuth) assertOperator(c, deps.config.apiKey);
    }
    if (!name) throw new NotFoundError(`no invocation ${echo(id)} (unknown, or past its retention)`);
    const status = await withDeadline(`reading invocation ${echo(id)}`, REDIS_DEADLINE_MS, () => functions.queue.status(id, name));
    const secrets = status.version === undefined ? [] : await deps.store.secretValuesOf(name, status.version).catch(() => []);
    return c.json(invocationView(status, redactor(secrets)));
  });
}

function isOperator(c: Context, apiKey: string | undefined): boolean {
  try {
    assertOperator(c, apiKey);
    return true;
  } catch {
    return false;
  }
}
