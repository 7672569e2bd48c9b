import { createRoute } from '@hono/zod-openapi';
import type { LogsResponse } from '../schemas/api.ts';
import { errors, FunctionNameParam, INVALID, InvocationLogEntry, json, LogsQuery, LogsResponse as LogsResponseSchema, NO_FUNCTION, OPERATOR_ERRORS } from './api-components.ts';
import { declareRoute, type GatewayApp } from './declare.ts';
import type { GatewayDeps } from './env.ts';
import { ndjsonResponse } from './ndjson.ts';

const route = createRoute({
  method: 'get',
  path: '/v1/functions/{name}/logs',
  tags: ['functions'],
  summary: 'Invocation log; with follow=1 an NDJSON stream of InvocationLogEntry that stays open',
  request: { params: FunctionNameParam, query: LogsQuery },
  responses: {
    200: { description: 'The newest entries (JSON), or with follow=1 those and every new one (NDJSON)', content: { ...json(LogsResponseSchema), 'application/x-ndjson': { schema: InvocationLogEntry } } },
    ...errors({ ...INVALID, ...OPERATOR_ERRORS, ...NO_FUNCTION }),
  },
});

/** `GET /v1/functions/:name/logs?limit=N[&follow=1]`: JSON, or with follow an NDJSON stream of entries that stays open. */
export function mountLogsRoute(app: GatewayApp, deps: GatewayDeps): void {
  const { store } = deps;
  declareRoute(
    app,
    route,
    async (c) => {
      const { name } = c.req.valid('param');
      await store.require(name);
      const { follow, limit } = c.req.valid('query');
      if (!follow) return c.json({ entries: await store.logs.tail(name, limit) } satisfies LogsResponse);
      return ndjsonResponse(async (send, signal) => {
        for await (const entry of store.logs.follow(name, { limit, signal })) send(entry);
      });
    },
    { querySubject: 'logs query' },
  );
}
