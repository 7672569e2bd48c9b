import type { Hono } from 'hono';
import { PreparedDeploy } from '../deploy/deploy-pipeline.ts';
import { storageFailure } from '../registry/disk-full.ts';
import { DeployRequest, type DeployEvent } from '../schemas/api.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { toSnapfnError } from './error-response.ts';
import { ndjsonResponse } from './ndjson.ts';
import { parseJsonBody, readBody } from './read-body.ts';
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
export function mountDeployRoute(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  app.post('/v1/functions', async (c) => {
    const body = await readBody(c.req.raw, maxDeployRequestBytes(deps.config.maxDeployBytes), 'deploy request');
    const request = parseJsonBody(DeployRequest, body, 'deploy request');
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
  });
}
