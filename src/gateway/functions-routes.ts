import { createRoute } from '@hono/zod-openapi';
import { removeFunction, rollback, updateEnv, updateSchedule } from '../deploy/release.ts';
import type { FunctionList, VersionList } from '../schemas/api.ts';
import {
  DeleteResponse,
  EnvUpdateRequest,
  errors,
  FunctionList as FunctionListSchema,
  FunctionNameParam,
  FunctionView,
  INVALID,
  json,
  NO_FUNCTION,
  ok,
  OPERATOR_ERRORS,
  RollbackRequest,
  ScheduleRequest,
  VersionList as VersionListSchema,
} from './api-components.ts';
import { declareRoute, type GatewayApp } from './declare.ts';
import type { GatewayDeps } from './env.ts';
import { functionView, loadFunctionView, publicBase, versionView } from './views.ts';

/** Small JSON bodies only: env and schedule updates, rollbacks. */
const MAX_SMALL_BODY = 1024 * 1024;

const TAG = ['functions'];
const ANSWERS = errors({ ...INVALID, ...OPERATOR_ERRORS, ...NO_FUNCTION });

/**
 * Listing, inspecting, rolling back, re-configuring and deleting functions
 * under /v1/functions. Every change of the active version goes through
 * src/deploy/release.ts, which also brings the queue layer (schedule,
 * limits, published deployment) in line with it.
 */
export function mountFunctionRoutes(app: GatewayApp, deps: GatewayDeps): void {
  const { store } = deps;

  declareRoute(app, createRoute({ method: 'get', path: '/v1/functions', tags: TAG, summary: 'List functions', responses: { 200: ok(FunctionListSchema), ...errors(OPERATOR_ERRORS) } }), async (c) => {
    const stats = deps.engine.stats();
    const functions = await Promise.all((await store.list()).map((fn) => loadFunctionView(store, fn, publicBase(deps), stats)));
    return c.json({ functions } satisfies FunctionList);
  });

  declareRoute(
    app,
    createRoute({ method: 'get', path: '/v1/functions/{name}', tags: TAG, summary: 'Get a function', request: { params: FunctionNameParam }, responses: { 200: ok(FunctionView), ...ANSWERS } }),
    async (c) => {
      const fn = await store.require(c.req.valid('param').name);
      return c.json(await loadFunctionView(store, fn, publicBase(deps), deps.engine.stats()));
    },
  );

  declareRoute(
    app,
    createRoute({
      method: 'delete',
      path: '/v1/functions/{name}',
      tags: TAG,
      summary: 'Delete a function with all its versions and logs',
      request: { params: FunctionNameParam },
      responses: { 200: ok(DeleteResponse), ...ANSWERS },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      await removeFunction(deps, name);
      deps.gc?.schedule(`delete of ${name}`);
      return c.json({ deleted: true, name });
    },
  );

  declareRoute(
    app,
    createRoute({ method: 'get', path: '/v1/functions/{name}/versions', tags: TAG, summary: 'List versions', request: { params: FunctionNameParam }, responses: { 200: ok(VersionListSchema), ...ANSWERS } }),
    async (c) => {
      const { name } = c.req.valid('param');
      const fn = await store.require(name);
      const versions = (await store.versions(name)).map((v) => versionView(v, fn.active));
      return c.json({ versions } satisfies VersionList);
    },
  );

  declareRoute(
    app,
    createRoute({
      method: 'post',
      path: '/v1/functions/{name}/rollback',
      tags: TAG,
      summary: 'Activate an older version (default: the one before the active one)',
      request: { params: FunctionNameParam, body: { required: false, description: 'Empty: the version before the active one', content: json(RollbackRequest) } },
      responses: { 200: ok(FunctionView), ...ANSWERS, ...errors({ 409: 'No earlier version (code conflict)', 413: 'Body over 1 MiB (code payload_too_large)' }) },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      await store.require(name);
      const { fn, version } = await rollback(deps, name, c.req.valid('json').version);
      return c.json(functionView(fn, version, publicBase(deps)));
    },
    { body: { maxBytes: MAX_SMALL_BODY, subject: 'rollback request', emptyAs: {} } },
  );

  declareRoute(
    app,
    createRoute({
      method: 'put',
      path: '/v1/functions/{name}/env',
      tags: TAG,
      summary: 'New version with changed env vars / secrets (null deletes one), same template',
      request: { params: FunctionNameParam, body: { required: true, content: json(EnvUpdateRequest) } },
      responses: { 200: ok(FunctionView), ...ANSWERS, ...errors({ 409: 'No active version (code conflict)', 413: 'Body over 1 MiB (code payload_too_large)' }) },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      await store.require(name);
      const { fn, version } = await updateEnv(deps, name, c.req.valid('json'));
      return c.json(functionView(fn, version, publicBase(deps)));
    },
    { body: { maxBytes: MAX_SMALL_BODY, subject: 'env update' } },
  );

  declareRoute(
    app,
    createRoute({
      method: 'put',
      path: '/v1/functions/{name}/schedule',
      tags: TAG,
      summary: 'New version with another cron schedule (null removes it), same template',
      request: { params: FunctionNameParam, body: { required: true, content: json(ScheduleRequest) } },
      responses: { 200: ok(FunctionView), ...ANSWERS, ...errors({ 409: 'No active version (code conflict)', 413: 'Body over 1 MiB (code payload_too_large)' }) },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      await store.require(name);
      const { fn, version } = await updateSchedule(deps, name, c.req.valid('json').schedule);
      return c.json(functionView(fn, version, publicBase(deps)));
    },
    { body: { maxBytes: MAX_SMALL_BODY, subject: 'schedule update' } },
  );
}
