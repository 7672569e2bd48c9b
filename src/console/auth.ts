import crypto from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { assertOperator } from '../gateway/auth.ts';
import { ForbiddenError, UnauthorizedError } from '../gateway/http-errors.ts';

export const SESSION_COOKIE = 'snapfn_console';
const SESSION_SECONDS = 12 * 3600;
const COOKIE_PATH = '/console';

/*
 * The console's access is the API's: without SNAPFN_API_KEY, loopback
 * peers only (assertOperator); with it, a session cookie set by the login
 * form, or the same Bearer header /v1 takes. The cookie holds an expiry and
 * an HMAC of it under the key, not the key: stateless (any gateway with the
 * same key accepts it, a restart keeps it), it lapses by itself, and a
 * changed key voids every session at once.
 */

function sessionMac(apiKey: string, expiresAt: number): string {
  return crypto.createHmac('sha256', apiKey).update(`snapfn-console-session\0${expiresAt}`).digest('base64url');
}

export function sessionToken(apiKey: string, now = Date.now()): string {
  const expiresAt = Math.floor(now / 1000) + SESSION_SECONDS;
  return `${expiresAt}.${sessionMac(apiKey, expiresAt)}`;
}

export function validSession(apiKey: string, token: string | undefined, now = Date.now()): boolean {
  const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token ?? '');
  if (!match) return false;
  const expiresAt = Number(match[1]);
  if (expiresAt * 1000 <= now) return false;
  const expected = Buffer.from(sessionMac(apiKey, expiresAt));
  const given = Buffer.from(match[2]!);
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

/** Hashed first, as the gateway's own check does: equal lengths for timingSafeEqual, and no length leak. */
export function keyMatches(given: string, apiKey: string): boolean {
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(apiKey).digest();
  return crypto.timingSafeEqual(a, b);
}

export function startSession(c: Context, apiKey: string): void {
  setCookie(c, SESSION_COOKIE, sessionToken(apiKey), {
    httpOnly: true,
    sameSite: 'Strict',
    path: COOKIE_PATH,
    maxAge: SESSION_SECONDS,
    secure: new URL(c.req.url).protocol === 'https:',
  });
}

export function endSession(c: Context): void {
  deleteCookie(c, SESSION_COOKIE, { path: COOKIE_PATH });
}

/**
 * A browser that reached a loopback gateway by a name that is not a
 * loopback name was sent there by DNS rebinding: its page may read the
 * answers as same-origin, so the peer address alone does not make it local.
 */
function loopbackHostName(c: Context): boolean {
  const host = (c.req.header('host') ?? '').toLowerCase();
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(name) || name === '::1';
}

/** Whether this request may see the console; throws the refusal for loopback-only gateways. */
export function isSignedIn(c: Context, apiKey: string | undefined): boolean {
  if (apiKey === undefined) {
    assertOperator(c, undefined);
    if (!loopbackHostName(c)) throw new ForbiddenError(`without SNAPFN_API_KEY the console answers only to loopback names (localhost, 127.0.0.1, [::1]), not ${c.req.header('host') ?? 'a missing Host'}`);
    return true;
  }
  if (validSession(apiKey, getCookie(c, SESSION_COOKIE))) return true;
  if (c.req.header('authorization') === undefined) return false;
  assertOperator(c, apiKey);
  return true;
}

/** Pages send a browser without a session to the login form; anything else is refused outright. */
export function requireConsoleUser(apiKey: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (isSignedIn(c, apiKey)) return next();
    const url = new URL(c.req.url);
    if (c.req.method === 'GET' && !c.req.header('x-console-fragment')) return c.redirect(`/console/login?next=${encodeURIComponent(url.pathname + url.search)}`, 303);
    throw new UnauthorizedError('sign in to the console first (the session cookie is missing or has expired)');
  };
}

/**
 * CSRF: a state-changing request must come from a page of this console.
 * The SameSite=Strict cookie already stays home on cross-site requests;
 * this also covers the loopback mode, which has no cookie at all (any
 * site the local browser opens could otherwise post to 127.0.0.1).
 */
export function sameOrigin(c: Context): boolean {
  if (c.req.header('sec-fetch-site') === 'cross-site') return false;
  const host = c.req.header('host');
  const source = c.req.header('origin') ?? c.req.header('referer');
  if (!host || !source || source === 'null') return false;
  try {
    return new URL(source).host === host;
  } catch {
    return false;
  }
}

export function requireSameOrigin(): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && !sameOrigin(c)) {
      throw new ForbiddenError('this form was not sent from a page of this console (Origin/Referer missing or from another site)');
    }
    await next();
  };
}

/** Where to go after signing in: only a console path of this server, never a URL elsewhere. */
export function safeNext(next: string | undefined): string {
  return next && /^\/console(\/|$|\?)/.test(next) && !next.includes('\\') && !next.startsWith('//') ? next : '/console';
}
