import type { Hono } from 'hono';
import { removeFunction, rollback, updateEnv, updateSchedule } from '../deploy/release.ts';
import { EnvUpdateRequest, RollbackRequest, ScheduleRequest, type FunctionList, type VersionList } from '../schemas/api.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { parseJsonBody, readBody } from './read-body.ts';
import { functionView, loadFunctionView, publicBase, versionView } from './views.ts';

/** Small JSON bodies only: env and schedule updates, rollbacks. */
const MAX_SMALL_BODY = 1024 * 1024;

/**
 * Listing, inspecting, rolling back, re-configuring and deleting functions
 * under /v1/functions. Every change of the active version goes through
 * src/deploy/release.ts, which also brings the queue layer (schedule,
 * limits, published deployment) in line with it.
 */
export function mountFunctionRoutes(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  const { store } = deps;

  app.get('/v1/functions', async (c) => {
    const stats = deps.engine.stats();
    const functions = await Promise.all((await store.list()).map((fn) => loadFunctionView(store, fn, publicBase(deps), stats)));
    return c.json({ functions } satisfies FunctionList);
  });

  app.get('/v1/functions/:name', async (c) => {
    const fn = await store.require(c.req.param('name'));
    return c.json(await loadFunctionView(store, fn, publicBase(deps), deps.engine.stats()));
  });

  app.delete('/v1/functions/:name', async (c) => {
    const name = c.req.param('name');
    await removeFunction(deps, name);
    deps.gc?.schedule(`delete of ${name}`);
    return c.json({ deleted: true, name });
  });

  app.get('/v1/functions/:name/versions', async (c) => {
    const name = c.req.param('name');
    const fn = await store.require(name);
    const versions = (await store.versions(name)).map((v) => versionView(v, fn.active));
    return c.json({ versions } satisfies VersionList);
  });

  app.post('/v1/functions/:name/rollback', async (c) => {
    const name = c.req.param('name');
    await store.require(name);
    const request = parseJsonBody(RollbackRequest, await readBody(c.req.raw, MAX_SMALL_BODY), 'rollback request', { emptyAs: {} });
    const { fn, version } = await rollback(deps, name, request.version);
    return c.json(functionView(fn, version, publicBase(deps)));
  });

  app.put('/v1/functions/:name/env', async (c) => {
    const name = c.req.param('name');
    await store.require(name);
    const request = parseJsonBody(EnvUpdateRequest, await readBody(c.req.raw, MAX_SMALL_BODY), 'env update');
    const { fn, version } = await updateEnv(deps, name, request);
    return c.json(functionView(fn, version, publicBase(deps)));
  });

  app.put('/v1/functions/:name/schedule', async (c) => {
    const name = c.req.param('name');
    await store.require(name);
    const request = parseJsonBody(ScheduleRequest, await readBody(c.req.raw, MAX_SMALL_BODY), 'schedule update');
    const { fn, version } = await updateSchedule(deps, name, request.schedule);
    return c.json(functionView(fn, version, publicBase(deps)));
  });
}
