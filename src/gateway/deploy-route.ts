import type { Hono } from 'hono';
import { PreparedDeploy } from '../deploy/deploy-pipeline.ts';
import { DeployRequest, type DeployEvent } from '../schemas/api.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { toSnapfnError } from './error-response.ts';
import { ndjsonResponse } from './ndjson.ts';
import { parseJsonBody, readBody } from './read-body.ts';
import { loadFunctionView } from './views.ts';

/** Room for base64 (4/3) and the JSON around the files; the exact limit is applied to the decoded bytes. */
export function maxDeployRequestBytes(maxBundleBytes: number): number {
  return Math.ceil((maxBundleBytes * 4) / 3) + 8 * 1024 * 1024;
}

/**
 * `POST /v1/functions`. Validation and bundling fail as plain JSON errors;
 * once the template build starts the response is an NDJSON stream of
 * progress events ending in one `result` or `error` event.
 */
export function mountDeployRoute(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  app.post('/v1/functions', async (c) => {
    const body = await readBody(c.req.raw, maxDeployRequestBytes(deps.config.maxBundleBytes), 'deploy request');
    const request = parseJsonBody(DeployRequest, body, 'deploy request');
    const prepared = await PreparedDeploy.prepare({ engine: deps.engine, store: deps.store, maxBundleBytes: deps.config.maxBundleBytes, queue: deps.queue }, request);
    const origin = new URL(c.req.url).origin;
    return ndjsonResponse(async (send) => {
      const emit = (event: DeployEvent) => send(event);
      try {
        // A client that disconnects does not cancel the deploy: it completes (or fails) as a whole.
        const outcome = await prepared.run((step, detail) => emit({ type: 'progress', step, ...(detail ? { detail } : {}) }));
        // Off the request path; a failed collection never fails the deploy.
        if (!outcome.unchanged) deps.gc?.schedule(`deploy of ${request.name}`);
        emit({ type: 'result', function: await loadFunctionView(deps.store, outcome.fn, origin) });
      } catch (err) {
        emit({ type: 'error', error: toSnapfnError(err, deps.log).toJSON().error });
      } finally {
        await prepared.close();
      }
    });
  });
}
