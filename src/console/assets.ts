import fs from 'node:fs/promises';
import type { Hono } from 'hono';
import type { GatewayEnv } from '../gateway/env.ts';

/** The console's two static files, committed as they are served: nothing is built. */
const ASSETS: Record<string, string> = {
  'console.css': 'text/css; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
};

/** Served before the sign-in check: the login page needs its stylesheet, and neither file says anything about the node. */
export function mountAssets(app: Hono<GatewayEnv>): void {
  const cache = new Map<string, Promise<string>>();
  app.get('/assets/:file', async (c) => {
    const file = c.req.param('file');
    const type = ASSETS[file];
    if (!type) return c.text('not found', 404);
    let text = cache.get(file);
    if (!text) {
      text = fs.readFile(new URL(`./assets/${file}`, import.meta.url), 'utf8');
      cache.set(file, text);
      text.catch(() => cache.delete(file));
    }
    return c.body(await text, 200, { 'content-type': type, 'cache-control': 'no-cache' });
  });
}
