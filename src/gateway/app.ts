import { createRoute, z } from '@hono/zod-openapi';
import { echo, NotFoundError } from '../errors.ts';
import type { HealthResponse } from '../schemas/api.ts';
import { consoleApp } from '../console/console-app.tsx';
import { evalRoutes } from '../eval/routes.ts';
import { errors, HealthResponse as HealthSchema, HealthUnavailable, json, OPERATOR_ERRORS } from './api-components.ts';
import { requireOperator } from './auth.ts';
import { mountBlobRoutes } from './blobs-route.ts';
import { declareMount, declareRoute, gatewayApp, useMiddleware, type GatewayApp } from './declare.ts';
import { mountDeployRoute } from './deploy-route.ts';
import type { GatewayDeps } from './env.ts';
import { errorResponse, toSnapfnError } from './error-response.ts';
import { mountFunctionRoutes } from './functions-routes.ts';
import { mountGcRoute } from './gc-route.ts';
import { mountInvocationRoutes } from './invocations-route.ts';
import { mountInvokeRoutes } from './invoke-route.ts';
import { mountLogsRoute } from './logs-route.ts';
import { mountApiReference } from './openapi.ts';
import { mountTopicRoutes } from './topics-route.ts';

export type { GatewayDeps, GatewayEnv } from './env.ts';
export type { GatewayApp } from './declare.ts';

const healthRoute = createRoute({
  method: 'get',
  path: '/healthz',
  tags: ['node'],
  summary: 'Liveness, readiness and capacity',
  security: [],
  responses: {
    200: { description: 'Ready', content: json(HealthSchema) },
    503: { description: 'Not ready: Redis is unavailable, so queued, async and scheduled work cannot be taken (direct invocations still run); code queue_unavailable', content: json(HealthUnavailable) },
  },
});

const metricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  tags: ['node'],
  summary: 'Prometheus metrics of this node (operator only)',
  responses: { 200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: z.string() } } }, ...errors(OPERATOR_ERRORS) },
});

const html = (description: string) => ({ description, content: { 'text/html': { schema: z.string() } } });
const consoleRoutes = (['get', 'post'] as const).flatMap((method) =>
  ['/console', '/console/{path}'].map((path) =>
    createRoute({
      method,
      path,
      tags: ['console'],
      summary: method === 'get' ? 'The web console: HTML pages (docs/console.md)' : 'The web console: its forms (sign-in, rollback, eval), same-origin only',
      description: 'A browser UI with its own sign-in (the operator key, as a session cookie), not a JSON API.',
      security: [],
      ...(path.endsWith('{path}') ? { request: { params: z.object({ path: z.string().openapi({ description: 'The page, e.g. functions/hello, invocations, live, eval, login' }) }) } } : {}),
      responses: { 200: html('A page'), 303: { description: 'Redirect (sign-in, after a form)' }, 400: html('Bad form'), 401: html('Not signed in'), 403: html('Cross-origin form'), 404: html('No such page') },
    }),
  ),
);

/**
 * The gateway as one OpenAPIHono app: functions at /fn/:name, the
 * management API at /v1 (operator-only), /healthz, /metrics, the console.
 * Every route is declared with its schemas (declare.ts), and GET
 * /v1/openapi.json is generated from the declarations. Every error,
 * expected or not, leaves as `{ "error": { "code", "message" } }`.
 */
export function createGateway(deps: GatewayDeps): GatewayApp {
  const app = gatewayApp();

  app.onError((err) => errorResponse(toSnapfnError(err, deps.log)));
  app.notFound((c) => errorResponse(new NotFoundError(`no route for ${echo(c.req.method, 16)} ${echo(c.req.path, 128)}`)));

  declareRoute(app, healthRoute, async (c) => {
    const stats = deps.engine.stats();
    const functions = (await deps.store.list()).length;
    const engine = { liveSandboxes: stats.liveSandboxes, maxSandboxes: stats.maxSandboxes, freeCapacity: deps.engine.freeCapacity() };
    // Not ready without Redis: queued, async and scheduled work cannot be taken
    // (direct invocations still run; a probe that restarts the node would stop those too).
    const redis = deps.queue?.queue.health.state();
    if (redis && !redis.available) {
      const message = `Redis is unavailable since ${new Date(redis.since).toISOString()}: ${redis.reason ?? 'not connected'}`;
      return c.json({ ok: false, error: { code: 'queue_unavailable', message }, functions, engine }, 503);
    }
    return c.json({ ok: true, functions, engine } satisfies HealthResponse);
  });

  mountInvokeRoutes(app, deps);
  // Before the /v1 guard: it does its own (narrower) auth, see the route.
  mountInvocationRoutes(app, deps);

  const { metrics } = deps;
  if (metrics) {
    declareRoute(app, { ...metricsRoute, middleware: [requireOperator(deps.config.apiKey)] }, async (c) =>
      c.text(await metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }),
    );
  }

  useMiddleware(app, '/v1/*', requireOperator(deps.config.apiKey));
  mountApiReference(app);
  if (deps.evalService || deps.evalUnavailable) {
    app.route('/v1/eval', evalRoutes(deps.evalService, { ...(deps.evalUnavailable ? { unavailable: deps.evalUnavailable } : {}), ...(deps.log ? { log: deps.log } : {}) }));
  }
  mountBlobRoutes(app, deps);
  mountDeployRoute(app, deps);
  mountFunctionRoutes(app, deps);
  mountTopicRoutes(app, deps);
  mountLogsRoute(app, deps);
  mountGcRoute(app, deps);
  declareMount(app, '/console', consoleApp(deps), consoleRoutes);
  return app;
}
