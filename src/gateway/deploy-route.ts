import { createRoute } from '@hono/zod-openapi';
import { PreparedDeploy } from '../deploy/deploy-pipeline.ts';
import { storageFailure } from '../registry/disk-full.ts';
import type { DeployEvent } from '../schemas/api.ts';
import { DeployEvent as DeployEventSchema, DeployRequest, errors, INVALID, json, OPERATOR_ERRORS } from './api-components.ts';
import { declareRoute, type GatewayApp } from './declare.ts';
import type { GatewayDeps } from './env.ts';
import { toSnapfnError } from './error-response.ts';
import { ndjsonResponse } from './ndjson.ts';
import { loadFunctionView, publicBase } from './views.ts';

const MiB = 1024 * 1024;

/**
 * Inline `files` beyond this must come as blobs: the deploy request is
 * parsed in memory, so it stays small whatever SNAPFN_MAX_DEPLOY_BYTES is.
 * 20 MiB was the whole limit before manifests, so no client that worked stops working.
 */
const MAX_INLINE_BYTES = 20 * MiB;

/** Room for inline files as base64 (4/3) and for the JSON around them (a 50 000-entry manifest included); the exact limit is applied to the unpacked total. */
export function maxDeployRequestBytes(maxDeployBytes: number): number {
  return Math.ceil((Math.min(maxDeployBytes, MAX_INLINE_BYTES) * 4) / 3) + 12 * MiB;
}

/**
 * `POST /v1/functions`, with the files inline or by manifest (blobs-route.ts).
 * Validation and preparation fail as plain JSON errors;
 * once the template build starts the response is an NDJSON stream of
 * progress events ending in one `result` or `error` event.
 */
const route = createRoute({
  method: 'post',
  path: '/v1/functions',
  tags: ['functions'],
  summary: 'Deploy a function (new version)',
  description:
    'The files come inline (`files`, base64) or by content (`manifest`, naming blobs uploaded with PUT /v1/blobs/{sha256}), or both. Validation and preparation errors are JSON errors (a manifest naming blobs the server lacks: 400 missing_blobs, with details.missing). After that the response is application/x-ndjson: DeployEvent lines, the last one of type "result" or "error".',
  request: { body: { required: true, content: json(DeployRequest) } },
  responses: {
    200: { description: 'Deploy progress, one DeployEvent per line; the last is "result" or "error"', content: { 'application/x-ndjson': { schema: DeployEventSchema } } },
    ...errors({
      ...INVALID,
      ...OPERATOR_ERRORS,
      413: 'Function directory over SNAPFN_MAX_DEPLOY_BYTES, or inline files too large for one request (send them as blobs); code payload_too_large',
      507: 'SNAPFN_HOME is out of disk space (code insufficient_storage)',
    }),
  },
});

export function mountDeployRoute(app: GatewayApp, deps: GatewayDeps): void {
  const body = { maxBytes: () => maxDeployRequestBytes(deps.config.maxDeployBytes), subject: 'deploy request' };
  declareRoute(app, route, async (c) => {
    const request = c.req.valid('json');
    const prepared = await PreparedDeploy.prepare({ engine: deps.engine, store: deps.store, maxDeployBytes: deps.config.maxDeployBytes, queue: deps.queue }, request);
    const origin = publicBase(deps);
    return ndjsonResponse(async (send) => {
      const emit = (event: DeployEvent) => send(event);
      try {
        // A client that disconnects does not cancel the deploy: it completes (or fails) as a whole.
        const outcome = await prepared.run((step, detail) => emit({ type: 'progress', step, ...(detail ? { detail } : {}) }));
        // Off the request path; a failed collection never fails the deploy.
        if (!outcome.unchanged) deps.gc?.schedule(`deploy of ${request.name}`);
        emit({ type: 'result', function: await loadFunctionView(deps.store, outcome.fn, origin) });
      } catch (err) {
        emit({ type: 'error', error: toSnapfnError((await storageFailure(err, deps.store.root)) ?? err, deps.log).toJSON().error });
      } finally {
        await prepared.close();
      }
    });
  }, { body });
}
