import crypto from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';
import { ForbiddenError, UnauthorizedError } from './http-errors.ts';

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/** The TCP peer's address; undefined when the request did not come through a node server (fails closed). */
export function remoteAddress(c: Context): string | undefined {
  try {
    return getConnInfo(c).remote.address;
  } catch {
    return undefined;
  }
}

function sameKey(given: string, expected: string): boolean {
  // Hash first: timingSafeEqual needs equal lengths, and the length must not leak either.
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(expected).digest();
  return crypto.timingSafeEqual(a, b);
}

/**
 * Operator access: the bearer key when SNAPFN_API_KEY is set, otherwise
 * loopback peers only. A request that went through a proxy (Forwarded /
 * X-Forwarded-For) is not trusted as local even if the proxy runs on this
 * host: its real client is somewhere else.
 */
export function assertOperator(c: Context, apiKey: string | undefined): void {
  if (apiKey !== undefined) {
    const header = c.req.header('authorization');
    if (!header) throw new UnauthorizedError('missing "Authorization: Bearer <key>" header');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match?.[1] || !sameKey(match[1], apiKey)) throw new UnauthorizedError('wrong API key');
    return;
  }
  const address = remoteAddress(c);
  const proxied = c.req.header('forwarded') !== undefined || c.req.header('x-forwarded-for') !== undefined;
  if (!isLoopback(address) || proxied) {
    throw new ForbiddenError(`without SNAPFN_API_KEY set on the server, only local clients may use this (request came from ${proxied ? 'a proxy' : (address ?? 'an unknown address')})`);
  }
}

export function requireOperator(apiKey: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    assertOperator(c, apiKey);
    await next();
  };
}
