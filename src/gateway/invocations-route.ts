import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { echo, NotFoundError } from '../errors.ts';
import { withDeadline } from '../queue/deadline.ts';
import { errors, InvocationView, KEY_OPTIONAL, ok, OPERATOR_ERRORS, REDIS_DOWN } from './api-components.ts';
import { assertOperator } from './auth.ts';
import { declareRoute, type GatewayApp } from './declare.ts';
import type { GatewayDeps } from './env.ts';
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
const route = createRoute({
  method: 'get',
  path: '/v1/invocations/{id}',
  tags: ['invocations'],
  // Operators read any; others those of open functions they started (below).
  security: KEY_OPTIONAL,
  summary: 'Status and result of a queued invocation (async, idempotent, queued under load, a schedule run or a topic message)',
  description:
    'Operators may read any invocation. Other clients may read invocations of functions without requireAuth, except schedule runs. Direct invocations have no status here, only their log entry.',
  request: { params: z.object({ id: z.string().openapi({ description: 'The invocation id (X-Fn-Invocation-Id, AsyncAccepted.id)' }) }) },
  responses: {
    200: ok(InvocationView),
    ...errors({ ...OPERATOR_ERRORS, 404: 'Unknown invocation, past its retention (1 h after completion, 7 days after death), or a gateway without the queue (code not_found)', ...REDIS_DOWN }),
  },
});

export function mountInvocationRoutes(app: GatewayApp, deps: GatewayDeps): void {
  declareRoute(app, route, async (c) => {
    const { id } = c.req.valid('param');
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
