import { OpenAPIHono, type RouteConfig, type RouteHandler } from '@hono/zod-openapi';
import type { Hono, MiddlewareHandler } from 'hono';
import type { z } from 'zod';
import { InvalidInputError } from '../errors.ts';
import { zodMessage } from '../schemas/zod-message.ts';
import type { GatewayEnv } from './env.ts';
import { jsonBody, type JsonBodyRule } from './read-body.ts';

/*
 * Every route of the gateway is declared here, once: path, method, the zod
 * schemas of its params, query, headers, body and responses, and its
 * handler. The same declaration routes the request, validates it and is
 * the route's entry in GET /v1/openapi.json (@hono/zod-openapi's registry),
 * so a route cannot exist without its description.
 */

export type GatewayApp = OpenAPIHono<GatewayEnv>;

/** The handler's context, typed from the declaration (`c.req.valid('json' | 'query' | 'param' | 'header')`). */
export type RouteContext<R extends RouteConfig> = Parameters<RouteHandler<R, GatewayEnv>>[0];
/** Handlers answer with any Response: errors are thrown (one shape, see error-response.ts), streams are built by hand. */
export type RouteFn<R extends RouteConfig> = (c: RouteContext<R>) => Response | Promise<Response>;

type Target = 'param' | 'query' | 'header' | 'json';

export interface RouteRules {
  /** Required with a JSON body: how much of it is read, and what the error messages call it. */
  body?: JsonBodyRule;
  /** What a validation message calls the query (e.g. `logs query`: "invalid logs query: limit: ..."). */
  querySubject?: string;
}

/** A failed check of params, query or headers as our 400 invalid_input (thrown: the app's onError answers it). */
function invalidInput(rules: RouteRules = {}) {
  return (result: { success: boolean; target: string; error?: z.ZodError }) => {
    if (result.success || !result.error) return;
    const subject: Partial<Record<Target, string>> = { query: rules.querySubject ?? 'query', header: 'headers' };
    throw new InvalidInputError(zodMessage(result.error, subject[result.target as Target]));
  };
}

/** An app whose validation failures come out in the gateway's error shape (sub-apps too). */
export function gatewayApp(): GatewayApp {
  return new OpenAPIHono<GatewayEnv>({ defaultHook: invalidInput() });
}

/**
 * One route: documented as declared, routed, its params/query/headers
 * validated by @hono/zod-openapi, its JSON body read by jsonBody (capped
 * while streaming, whatever the Content-Type says, as the CLI and curl send
 * it) rather than by the tooling's reader, which buffers any size.
 */
export function declareRoute<R extends RouteConfig>(app: GatewayApp, route: R, handler: RouteFn<R>, rules: RouteRules = {}): void {
  const { middleware, hide: _hide, ...documented } = route;
  app.openAPIRegistry.registerPath(documented);
  const { body, ...request } = route.request ?? {};
  const schema = (body?.content['application/json'] as { schema?: z.ZodType } | undefined)?.schema;
  if (schema && !rules.body) throw new Error(`${route.method.toUpperCase()} ${route.path}: a JSON body needs its size limit (rules.body)`);
  const readers: MiddlewareHandler[] = schema && rules.body ? [jsonBody(schema, rules.body)] : [];
  const before = middleware === undefined ? [] : Array.isArray(middleware) ? middleware : [middleware];
  app.openapi({ ...route, hide: true, request, middleware: [...before, ...readers] }, handler as never, invalidInput(rules) as never);
}

/** What OpenAPI can say of "any method": every one of its methods a fetch client can send (TRACE it cannot). */
export const ANY_METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'] as const;

/**
 * A route that takes every method (ANY /fn/:name): documented under each
 * method OpenAPI has, routed with app.all. Nothing is validated before the
 * handler: it checks the declared headers itself, after the function lookup.
 */
export function declareAnyMethod(
  app: GatewayApp,
  route: Omit<RouteConfig, 'method'>,
  handler: (c: RouteContext<RouteConfig>) => Response | Promise<Response>,
  /** Hono's path when it is not the documented one with `{x}` as `:x` (a trailing wildcard: `/fn/:name/*`). */
  routingPath = route.path.replaceAll(/\/{(.+?)}/g, '/:$1'),
): void {
  for (const method of ANY_METHODS) {
    app.openAPIRegistry.registerPath({ ...route, method, ...(route.operationId ? { operationId: `${route.operationId}-${method}` } : {}) } as RouteConfig);
  }
  app.all(routingPath, handler as never);
}

/**
 * A sub-app with its own routing (the HTML console), mounted at `path` and
 * documented by `routes` (its own entries stay out of the document: they
 * are pages, not API).
 */
export function declareMount(app: GatewayApp, path: string, sub: Hono<GatewayEnv>, routes: RouteConfig[]): void {
  for (const route of routes) app.openAPIRegistry.registerPath(route);
  app.route(path, sub);
}

const middlewares = new WeakSet<MiddlewareHandler>();

/** Middleware over a path prefix (auth guards, response headers): not a route, so not in the document. */
export function useMiddleware(app: GatewayApp, path: string, middleware: MiddlewareHandler<GatewayEnv>): void {
  middlewares.add(middleware as MiddlewareHandler);
  app.use(path, middleware);
}

/** Whether an entry of `app.routes` is middleware installed with useMiddleware (the route-coverage test skips those). */
export function isMiddleware(handler: unknown): boolean {
  return typeof handler === 'function' && middlewares.has(handler as MiddlewareHandler);
}
