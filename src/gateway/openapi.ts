import { createRoute, z } from '@hono/zod-openapi';
import { renderApiReference } from './api-reference.ts';
import { CallbackPayload, errors, OPERATOR_ERRORS } from './api-components.ts';
import { declareRoute, type GatewayApp } from './declare.ts';

type OpenApiDocument = ReturnType<GatewayApp['getOpenAPIDocument']>;

const INFO = {
  title: 'snapfn',
  version: '1',
  description:
    'The HTTP API of a snapfn gateway, generated from the route declarations themselves (src/gateway/declare.ts): a route exists only with its entry here. Functions are served at ANY /fn/{name}[/...]; the management API under /v1 is for operators (Authorization: Bearer SNAPFN_API_KEY, or loopback clients when no key is set). Errors are `{ "error": { "code", "message" } }` with an HTTP status everywhere. A human-readable rendering of this document: GET /v1/docs.',
};

const docRoute = createRoute({
  method: 'get',
  path: '/v1/openapi.json',
  tags: ['reference'],
  summary: 'This document (OpenAPI 3.0.3)',
  responses: { 200: { description: 'The OpenAPI document', content: { 'application/json': { schema: z.record(z.string(), z.unknown()) } } }, ...errors(OPERATOR_ERRORS) },
});

const htmlRoute = createRoute({
  method: 'get',
  path: '/v1/docs',
  tags: ['reference'],
  summary: 'This document as one HTML page (no scripts, nothing loaded from elsewhere: works offline)',
  responses: { 200: { description: 'The API reference', content: { 'text/html': { schema: z.string() } } }, ...errors(OPERATOR_ERRORS) },
});

/** Markup of ours only: inline style, no script, nothing from another origin. */
const DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * GET /v1/openapi.json and GET /v1/docs, both from what `app` declares.
 * Generated once, at the first request: every route is declared by the
 * time createGateway returns, and never after.
 */
export function mountApiReference(app: GatewayApp): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', description: 'SNAPFN_API_KEY' });
  // Sent by the server, not answered by a route: what an X-Callback-Url receives.
  app.openAPIRegistry.register('CallbackPayload', CallbackPayload);
  let document: OpenApiDocument | undefined;
  let html: string | undefined;
  const generated = () => (document ??= openApiDocument(app));
  declareRoute(app, docRoute, (c) => c.json(generated()));
  declareRoute(app, htmlRoute, (c) => {
    html ??= renderApiReference(generated());
    return c.html(html, 200, { 'content-security-policy': DOCS_CSP, 'x-content-type-options': 'nosniff' });
  });
}

/** The document of every route `app` declares. */
export function openApiDocument(app: GatewayApp): OpenApiDocument {
  return app.getOpenAPIDocument({ openapi: '3.0.3', info: INFO, security: [{ bearer: [] }] });
}
