import { Hono } from 'hono';
import { echo, NotFoundError, SnapfnError } from '../errors.ts';
import type { HealthResponse } from '../schemas/api.ts';
import { requireOperator } from './auth.ts';
import { mountBlobRoutes } from './blobs-route.ts';
import { mountDeployRoute } from './deploy-route.ts';
import { consoleApp } from '../console/console-app.tsx';
import { evalRoutes } from '../eval/routes.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { errorResponse, toSnapfnError } from './error-response.ts';
import { mountFunctionRoutes } from './functions-routes.ts';
import { mountGcRoute } from './gc-route.ts';
import { mountInvocationRoutes } from './invocations-route.ts';
import { mountInvokeRoutes } from './invoke-route.ts';
import { mountLogsRoute } from './logs-route.ts';
import { openApiDocument } from './openapi.ts';
import { mountTopicRoutes } from './topics-route.ts';

export type { GatewayDeps, GatewayEnv } from './env.ts';

/**
 * The gateway as a Hono app: functions at /fn/:name, the management API at
 * /v1 (operator-only), /healthz. Every error, expected or not, leaves as
 * `{ "error": { "code", "message" } }`.
 */
export function createGateway(deps: GatewayDeps): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const openApi = openApiDocument();

  app.onError((err) => errorResponse(toSnapfnError(err, deps.log)));
  app.notFound((c) => errorResponse(new NotFoundError(`no route for ${echo(c.req.method, 16)} ${echo(c.req.path, 128)}`)));

  app.get('/healthz', async (c) => {
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
    app.use('/metrics', requireOperator(deps.config.apiKey));
    app.get('/metrics', async (c) => c.text(await metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }));
  }

  app.use('/v1/*', requireOperator(deps.config.apiKey));
  app.get('/v1/openapi.json', (c) => c.json(openApi));
  if (deps.evalService) app.route('/v1/eval', evalRoutes(deps.evalService));
  else if (deps.evalUnavailable) {
    const why = deps.evalUnavailable;
    app.all('/v1/eval', () => errorResponse(new SnapfnError('eval_unavailable', 503, `eval is not available on this node: ${why}`)));
  }
  mountBlobRoutes(app, deps);
  mountDeployRoute(app, deps);
  mountFunctionRoutes(app, deps);
  mountTopicRoutes(app, deps);
  mountLogsRoute(app, deps);
  mountGcRoute(app, deps);
  app.route('/console', consoleApp(deps));
  return app;
}
