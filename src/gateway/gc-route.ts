import type { Hono } from 'hono';
import { GcRequest, type GcReport } from '../schemas/gc.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { parseJsonBody, readBody } from './read-body.ts';

const MAX_GC_BODY = 64 * 1024;

/**
 * `POST /v1/admin/gc` `{ dryRun?, keepVersions? }`: collects unneeded
 * templates now and answers with what was removed and the bytes freed.
 * Mounted only where a collector runs (gateway nodes; docs/gc.md).
 */
export function mountGcRoute(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  const { gc } = deps;
  if (!gc) return;
  app.post('/v1/admin/gc', async (c) => {
    const request = parseJsonBody(GcRequest, await readBody(c.req.raw, MAX_GC_BODY, 'gc request'), 'gc request', { emptyAs: {} });
    const report: GcReport = await gc.collect(request);
    return c.json(report);
  });
}
