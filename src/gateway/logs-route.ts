import type { Hono } from 'hono';
import { InvalidInputError } from '../errors.ts';
import { LogsQuery, type LogsResponse } from '../schemas/api.ts';
import { zodMessage } from '../schemas/zod-message.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { ndjsonResponse } from './ndjson.ts';

/** `GET /v1/functions/:name/logs?limit=N[&follow=1]`: JSON, or with follow an NDJSON stream of entries that stays open. */
export function mountLogsRoute(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  const { store } = deps;
  app.get('/v1/functions/:name/logs', async (c) => {
    const name = c.req.param('name');
    await store.require(name);
    const parsed = LogsQuery.safeParse(c.req.query());
    if (!parsed.success) throw new InvalidInputError(zodMessage(parsed.error, 'logs query'));
    const { follow, limit } = parsed.data;
    if (!follow) return c.json({ entries: await store.logs.tail(name, limit) } satisfies LogsResponse);
    return ndjsonResponse(async (send, signal) => {
      for await (const entry of store.logs.follow(name, { limit, signal })) send(entry);
    });
  });
}
