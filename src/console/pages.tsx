import type { Context, Hono } from 'hono';
import { rollback } from '../deploy/release.ts';
import { InvalidInputError, SnapfnError } from '../errors.ts';
import type { GatewayEnv } from '../gateway/env.ts';
import { EVAL_LIMITS, EvalLanguage, type EvalInput, type EvalResult } from '../schemas/eval.ts';
import { functionRow, functionRows, driverName, type ConsoleContext } from './context.ts';
import { EvalPage, DEFAULT_EVAL_FORM, type EvalForm } from './eval-page.tsx';
import { FunctionCharts } from './function-charts.tsx';
import { FunctionPage, RollbackPage } from './function-page.tsx';
import { FunctionsPage } from './functions-page.tsx';
import { InvocationPage } from './invocation-page.tsx';
import { findInvocation, parseFilter, queryInvocations } from './invocations-query.ts';
import { InvocationsPage } from './invocations-page.tsx';
import { LivePage, LivePanel } from './live-page.tsx';
import { liveSnapshot } from './live-data.ts';
import type { Render } from './render.tsx';

/** Browsers send textarea lines as CRLF; bash would take the CR as part of each command. */
function lf(text: string): string {
  return text.replace(/\r\n?/g, '\n');
}

async function formOf(c: Context): Promise<Record<string, string>> {
  const body = await c.req.parseBody();
  return Object.fromEntries(Object.entries(body).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/** The five pages and the fragments console.js re-fetches. Every route here is behind the sign-in check. */
export function mountPages(app: Hono<GatewayEnv>, ctx: ConsoleContext, render: Render): void {
  const { deps } = ctx;
  const { store } = deps;

  app.get('/', async (c) => render.page(c, 'Functions', 'functions', <FunctionsPage rows={await functionRows(ctx)} driver={driverName(ctx)} />));

  app.get('/functions/:name', async (c) => {
    const name = c.req.param('name');
    const fn = await store.require(name);
    const [row, versions, recent] = await Promise.all([functionRow(ctx, fn, deps.engine.stats().pooled), store.versions(name), store.logs.tail(name, 10)]);
    const rolledBack = Number(c.req.query('rolledBack'));
    const notice = Number.isInteger(rolledBack) && rolledBack > 0 ? `Rolled back: ${name} now serves v${rolledBack}.` : undefined;
    return render.page(c, name, 'functions', <FunctionPage row={row} versions={versions} recent={recent.reverse()} series={ctx.series} {...(notice ? { notice } : {})} />);
  });

  app.get('/functions/:name/charts', async (c) => {
    const name = c.req.param('name');
    await store.require(name);
    return render.fragment(c, <FunctionCharts series={ctx.series} name={name} />);
  });

  app.get('/functions/:name/rollback', async (c) => {
    const name = c.req.param('name');
    const fn = await store.require(name);
    const target = await store.version(name, Number(c.req.query('version')) || 0);
    if (!target) throw new InvalidInputError(`${name} has no version ${c.req.query('version') ?? '(none given)'}`);
    return render.page(c, `Roll back ${name}`, 'functions', <RollbackPage name={name} from={fn.active} to={target} />);
  });

  app.post('/functions/:name/rollback', async (c) => {
    const name = c.req.param('name');
    const version = Number((await formOf(c)).version);
    if (!Number.isInteger(version) || version < 1) throw new InvalidInputError('give the version to roll back to');
    await store.require(name);
    const released = await rollback(deps, name, version);
    return c.redirect(`/console/functions/${name}?rolledBack=${released.version.version}`, 303);
  });

  app.get('/invocations', async (c) => {
    const filter = parseFilter(c.req.query());
    const [functions, { items, matched }] = await Promise.all([store.list(), queryInvocations(store, filter)]);
    return render.page(c, 'Invocations', 'invocations', <InvocationsPage filter={filter} functions={functions.map((f) => f.name)} items={items} matched={matched} />);
  });

  app.get('/invocations/:fn/:id', async (c) => {
    const fn = c.req.param('fn');
    const id = c.req.param('id');
    await store.require(fn);
    const attempts = await findInvocation(store, fn, id);
    if (attempts.length === 0) throw new SnapfnError('not_found', 404, `${fn} has no logged invocation ${id} (unknown, or rotated out of its log)`);
    return render.page(c, `Invocation ${id}`, 'invocations', <InvocationPage fn={fn} id={id} attempts={attempts} />);
  });

  app.get('/live', async (c) => render.page(c, 'Live', 'live', <LivePage live={await liveSnapshot(ctx)} />));
  app.get('/live/panel', async (c) => render.fragment(c, <LivePanel live={await liveSnapshot(ctx)} />));

  app.get('/eval', (c) => render.page(c, 'Eval', 'eval', <EvalPage available={deps.evalService !== undefined} form={DEFAULT_EVAL_FORM} />));

  app.post('/eval', async (c) => {
    const body = await formOf(c);
    const language = EvalLanguage.safeParse(body.language);
    const timeoutMs = Number(body.timeoutMs);
    const form: EvalForm = {
      language: language.success ? language.data : DEFAULT_EVAL_FORM.language,
      code: lf(body.code ?? ''),
      stdin: lf(body.stdin ?? ''),
      timeoutMs: Number.isInteger(timeoutMs) ? timeoutMs : EVAL_LIMITS.defaultTimeoutMs,
    };
    const available = deps.evalService !== undefined;
    let result: EvalResult | undefined;
    let failure: { code: string; message: string } | undefined;
    let status = 200;
    try {
      if (!deps.evalService) throw new SnapfnError('eval_disabled', 501, 'this gateway runs without the eval service (SNAPFN_EVAL=1 turns it on)');
      if (!language.success) throw new InvalidInputError(`language must be one of ${EvalLanguage.options.join(', ')}`);
      const input: EvalInput = { language: form.language, code: form.code, timeoutMs: form.timeoutMs, ...(form.stdin ? { stdin: form.stdin } : {}) };
      // The service behind POST /v1/eval, called in process: the browser holds a session cookie, not the Bearer key /v1 wants.
      result = await deps.evalService.evaluate(input);
    } catch (err) {
      if (!(err instanceof SnapfnError)) throw err;
      failure = { code: err.code, message: err.message };
      status = err.status;
    }
    return render.page(c, 'Eval', 'eval', <EvalPage available={available} form={form} {...(result ? { result } : {})} {...(failure ? { failure } : {})} />, status);
  });
}
