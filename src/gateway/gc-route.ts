import { createRoute } from '@hono/zod-openapi';
import type { GcReport } from '../schemas/gc.ts';
import { errors, GcReport as GcReportSchema, GcRequest, INVALID, json, ok, OPERATOR_ERRORS } from './api-components.ts';
import { declareRoute, type GatewayApp } from './declare.ts';
import type { GatewayDeps } from './env.ts';

const MAX_GC_BODY = 64 * 1024;

const route = createRoute({
  method: 'post',
  path: '/v1/admin/gc',
  tags: ['admin'],
  summary: 'Remove templates no kept version, eval language or running sandbox needs (dryRun: only report)',
  request: { body: { required: false, description: 'Empty: collect with the server\'s settings', content: json(GcRequest) } },
  responses: { 200: ok(GcReportSchema), ...errors({ ...INVALID, ...OPERATOR_ERRORS, 413: 'Body over 64 KiB (code payload_too_large)' }) },
});

/**
 * `POST /v1/admin/gc` `{ dryRun?, keepVersions? }`: collects unneeded
 * templates now and answers with what was removed and the bytes freed.
 * Mounted only where a collector runs (gateway nodes; docs/gc.md).
 */
export function mountGcRoute(app: GatewayApp, deps: GatewayDeps): void {
  const { gc } = deps;
  if (!gc) return;
  declareRoute(
    app,
    route,
    async (c) => {
      const report: GcReport = await gc.collect(c.req.valid('json'));
      return c.json(report);
    },
    { body: { maxBytes: MAX_GC_BODY, subject: 'gc request', emptyAs: {} } },
  );
}
