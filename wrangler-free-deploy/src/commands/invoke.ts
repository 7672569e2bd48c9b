import fs from 'node:fs/promises';
import path from 'node:path';
import { AsyncAccepted } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { CliError, UsageError } from '../cli-error.ts';
import { httpErrorOf } from '../client.ts';
import { parseCommand, readStream, type Command, type CommandContext } from '../context.ts';

const ERROR_HEADER = 'x-fn-error';
/** Only responses that came from a handler carry it. */
const VERSION_HEADER = 'x-fn-version';

/** `--data`: JSON given inline, or a file (`@path`, `@-` for stdin) sent as JSON when it parses as such. */
export async function requestBody(data: string | undefined, ctx: CommandContext): Promise<{ body: Buffer; contentType: string } | undefined> {
  if (data === undefined) return undefined;
  if (!data.startsWith('@')) {
    try {
      JSON.parse(data);
    } catch {
      throw new UsageError('--data is not valid JSON (send other bodies with --data @file)');
    }
    return { body: Buffer.from(data), contentType: 'application/json' };
  }
  const source = data.slice(1);
  const body = source === '-' ? await readStream(ctx.io.stdin) : await fs.readFile(path.resolve(ctx.io.cwd, source)).catch((err: Error) => {
    throw new CliError(`cannot read ${source}: ${err.message}`);
  });
  let isJson = true;
  try {
    JSON.parse(body.toString('utf8'));
  } catch {
    isJson = false;
  }
  return { body, contentType: isJson ? 'application/json' : 'application/octet-stream' };
}

export const invoke: Command = {
  name: 'invoke',
  summary: 'call a function and print its response body (--async: queue it and print its invocation id)',
  usage: 'fn invoke <name> [--data JSON|@file|@-] [--method METHOD] [--path /sub/path?query] [--async [--callback-url URL]] [--idempotency-key KEY] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(
      this,
      args,
      { data: { type: 'string', short: 'd' }, method: { type: 'string', short: 'X' }, path: { type: 'string' }, async: { type: 'boolean' }, 'callback-url': { type: 'string' }, 'idempotency-key': { type: 'string' } },
      { min: 1, max: 1 },
    );
    const name = positionals[0]!;
    const parsedName = FunctionName.safeParse(name);
    if (!parsedName.success) throw new UsageError(`invalid function name ${JSON.stringify(name)}`);
    const body = await requestBody(values.data, ctx);
    const method = (values.method ?? (body ? 'POST' : 'GET')).toUpperCase();
    if (!/^[A-Z]{1,16}$/.test(method)) throw new UsageError(`invalid --method ${JSON.stringify(values.method)}`);
    if (body && (method === 'GET' || method === 'HEAD')) throw new UsageError(`a ${method} request cannot have a body: drop --data or use another --method`);
    const subPath = values.path ?? '';
    if (subPath && !subPath.startsWith('/') && !subPath.startsWith('?')) throw new UsageError('--path must start with "/" or "?"');

    const key = values['idempotency-key'];
    if (key !== undefined && !/^[\x20-\x7e]{1,255}$/.test(key)) throw new UsageError('--idempotency-key must be 1-255 printable ASCII characters');
    const callbackUrl = values['callback-url'];
    if (callbackUrl !== undefined && !values.async) throw new UsageError('--callback-url needs --async');
    const headers: Record<string, string> = {
      ...(callbackUrl !== undefined ? { 'x-callback-url': callbackUrl } : {}),
      ...(body ? { 'content-type': body.contentType } : {}),
      ...(values.async ? { 'x-fn-async': '1' } : {}),
      ...(key !== undefined ? { 'idempotency-key': key } : {}),
    };
    const res = await ctx.client().fetch(method, `/fn/${name}${subPath}`, { ...(body ? { body: body.body } : {}), headers });
    if (values.async) {
      if (res.status !== 202) throw await httpErrorOf(res);
      const accepted = AsyncAccepted.safeParse(await res.json().catch(() => undefined));
      if (!accepted.success) throw new CliError('unexpected answer to an async invocation: no id');
      // The id alone on stdout, so `id=$(fn invoke x --async)` works; the hint goes to stderr.
      if (values.json) ctx.out(JSON.stringify({ id: accepted.data.id, location: res.headers.get('location') }, null, 2));
      else {
        ctx.out(accepted.data.id);
        ctx.note(`queued; see it with: fn invocation ${accepted.data.id}`);
      }
      return;
    }
    // An error snapfn produced (unknown function, timeout, crash...), not the handler's own response.
    if (res.headers.has(ERROR_HEADER) || !res.headers.has(VERSION_HEADER)) throw await httpErrorOf(res);
    const text = Buffer.from(await res.arrayBuffer()).toString('utf8');
    if (values.json) {
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      ctx.out(JSON.stringify({ status: res.status, headers: Object.fromEntries(res.headers), body: parsed, invocationId: res.headers.get('x-fn-invocation-id') }, null, 2));
    } else if (text) {
      ctx.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    }
    if (res.status >= 400) throw new CliError(`${name} answered HTTP ${res.status} (invocation ${res.headers.get('x-fn-invocation-id') ?? '?'})`);
  },
};
