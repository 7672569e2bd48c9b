import { createRoute, z } from '@hono/zod-openapi';
import { SnapfnError } from '../errors.ts';
import { ErrorBody, errors, EvalRequest, EvalResult, INVALID, json, OPERATOR_ERRORS } from '../gateway/api-components.ts';
import { declareRoute, gatewayApp, type GatewayApp } from '../gateway/declare.ts';
import { errorResponse, toSnapfnError } from '../gateway/error-response.ts';
import type { EvalService } from './eval-service.ts';

/** Request bodies above this are refused before parsing: 256 KiB of code + 1 MiB stdin + 8 MiB files, JSON-escaped. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

const route = createRoute({
  method: 'post',
  path: '/',
  tags: ['eval'],
  summary: 'Evaluate a snippet (javascript, typescript, python, bash) in a fresh sandbox',
  description:
    '200 with an EvalResult whenever the code ran, whatever it did (its failures are in `error`); 403 with the same shape when it asked for a network the server does not allow (docs/eval.md).',
  request: { body: { required: true, content: json(EvalRequest) } },
  responses: {
    200: { description: 'The code ran (its own failures: `error`)', content: json(EvalResult) },
    ...errors({
      ...INVALID,
      ...OPERATOR_ERRORS,
      413: `Body over ${MAX_BODY_BYTES} bytes (code payload_too_large)`,
      429: 'The node stayed full (code over_capacity), with Retry-After',
      501: 'This language cannot be evaluated on this server (code language_unavailable)',
      503: 'No sandbox could be restored (restore_failed), or eval could not start on this node at all (eval_unavailable, with the reason)',
    }),
    403: {
      description: 'The snippet asked for network and SNAPFN_EVAL_ALLOW_NETWORK is off (an EvalResult with error network_not_allowed), or the operator check failed (ErrorBody, code forbidden)',
      content: json(z.union([EvalResult, ErrorBody])),
    },
  },
});

export interface EvalRoutesOptions {
  /** Why eval could not start on this node: every request is answered 503 eval_unavailable with it. */
  unavailable?: string;
  /** Where unexpected errors are reported (defaults to console.error). */
  log?: (message: string) => void;
}

/**
 * `POST /`: evaluate a snippet (mounted by the gateway at /v1/eval, where
 * the operator guard of /v1 comes first). A gateway route like the others:
 * declared with its schemas, its body read by the gateway's reader, its
 * errors in the gateway's shape also when it runs on its own (tests).
 */
export function evalRoutes(service: EvalService | undefined, options: EvalRoutesOptions = {}): GatewayApp {
  const app = gatewayApp();
  app.onError((err) => errorResponse(toSnapfnError(err, options.log)));
  declareRoute(
    app,
    route,
    async (c) => {
      if (!service) throw new SnapfnError('eval_unavailable', 503, `eval is not available on this node: ${options.unavailable ?? 'not configured'}`);
      const result = await service.evaluate(c.req.valid('json'));
      return c.json(result, result.error?.code === 'network_not_allowed' ? 403 : 200);
    },
    { body: { maxBytes: MAX_BODY_BYTES, subject: 'eval request' } },
  );
  return app;
}
