import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { NotFoundError, SnapfnError } from '../errors.ts';
import type { GatewayDeps, GatewayEnv } from '../gateway/env.ts';
import { toSnapfnError } from '../gateway/error-response.ts';
import { mountAssets } from './assets.ts';
import { endSession, keyMatches, requireConsoleUser, requireSameOrigin, safeNext, startSession } from './auth.ts';
import type { ConsoleContext } from './context.ts';
import { ErrorPage } from './error-page.tsx';
import { HandlerShapes } from './handler-shape.ts';
import { LoginPage } from './login-page.tsx';
import { mountPages } from './pages.tsx';
import { renderer } from './render.tsx';
import { InvocationSeries } from './time-series.ts';

/** Form posts: eval code is at most 256 KiB, which URL-encoding can triple. */
const MAX_FORM_BYTES = 1024 * 1024;

/*
 * Nothing but this origin's own files and forms: even markup that slipped
 * through escaping could run no script, load nothing and post nowhere else.
 */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * The web console at /console: server-rendered pages over what the gateway
 * already has (the function store, the invocation log, engine stats, the
 * queue, the eval service), plus a per-minute series of invocations kept in
 * memory from the metrics object's invocation feed.
 */
export function consoleApp(deps: GatewayDeps): Hono<GatewayEnv> {
  const series = new InvocationSeries();
  deps.metrics?.onInvocation(series.record);
  const ctx: ConsoleContext = { deps, series, shapes: new HandlerShapes(deps.store) };
  const apiKey = deps.config.apiKey;
  const render = renderer({ signOut: apiKey !== undefined });
  const app = new Hono<GatewayEnv>();

  app.onError((err, c) => {
    const error = toSnapfnError(err, deps.log);
    if (c.req.header('x-console-fragment')) return render.fragment(c, <p class="error">{error.message}</p>, error.status);
    return render.page(c, 'Error', 'error', <ErrorPage status={error.status} code={error.code} message={error.message} />, error.status);
  });

  app.use('*', async (c, next) => {
    await next();
    c.header('content-security-policy', CSP);
    c.header('x-content-type-options', 'nosniff');
    c.header('x-frame-options', 'DENY');
    // Same-origin only: the Referer fallback of the CSRF check needs it, and no console URL leaks elsewhere.
    c.header('referrer-policy', 'same-origin');
    if (!c.res.headers.has('cache-control')) c.header('cache-control', 'no-store');
  });
  mountAssets(app);
  app.use('*', bodyLimit({ maxSize: MAX_FORM_BYTES, onError: () => Promise.reject(new SnapfnError('payload_too_large', 413, `forms are at most ${MAX_FORM_BYTES} bytes`)) }));
  app.use('*', requireSameOrigin());
  mountSession(app, apiKey, render);
  app.use('*', requireConsoleUser(apiKey));
  mountPages(app, ctx, render);
  app.all('*', (c) => {
    throw new NotFoundError(`the console has no page ${c.req.path}`);
  });
  return app;
}

function mountSession(app: Hono<GatewayEnv>, apiKey: string | undefined, render: ReturnType<typeof renderer>): void {
  const login = (c: Context, next: string, failed: boolean) => render.page(c, 'Sign in', 'login', <LoginPage next={next} failed={failed} />, failed ? 401 : 200);
  app.get('/login', (c) => (apiKey === undefined ? c.redirect('/console', 303) : login(c, safeNext(c.req.query('next')), false)));
  app.post('/login', async (c) => {
    if (apiKey === undefined) return c.redirect('/console', 303);
    const form = await c.req.parseBody();
    const next = safeNext(typeof form.next === 'string' ? form.next : undefined);
    if (typeof form.key !== 'string' || !keyMatches(form.key, apiKey)) return login(c, next, true);
    startSession(c, apiKey);
    return c.redirect(next, 303);
  });
  app.post('/logout', (c) => {
    endSession(c);
    return c.redirect(apiKey === undefined ? '/console' : '/console/login', 303);
  });
}
