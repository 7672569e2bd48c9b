import { InvocationView } from '../../../src/schemas/api.ts';
import { CliError, UsageError } from '../cli-error.ts';
import { intOption, parseCommand, type Command } from '../context.ts';
import { invocationLines } from '../format.ts';

const FINAL = new Set(['completed', 'failed', 'dead']);
const POLL_MS = 250;

export const invocation: Command = {
  name: 'invocation',
  summary: 'show the status and result of a queued invocation (alias: status)',
  usage: 'fn invocation <id> [--wait] [--timeout MS] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, { wait: { type: 'boolean', short: 'w' }, timeout: { type: 'string' } }, { min: 1, max: 1 });
    const id = positionals[0]!;
    if (!/^[\x21-\x7e]{1,200}$/.test(id)) throw new UsageError(`invalid invocation id ${JSON.stringify(id)}`);
    const timeoutMs = intOption('timeout', values.timeout) ?? 60_000;
    const client = ctx.client();
    const deadline = Date.now() + timeoutMs;
    let view = await client.call(InvocationView, 'GET', `/v1/invocations/${encodeURIComponent(id)}`);
    while (values.wait && !FINAL.has(view.status)) {
      if (Date.now() >= deadline) throw new CliError(`invocation ${id} is still ${view.status} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, POLL_MS));
      view = await client.call(InvocationView, 'GET', `/v1/invocations/${encodeURIComponent(id)}`);
    }
    if (values.json) ctx.out(JSON.stringify(view, null, 2));
    else for (const line of invocationLines(view)) ctx.out(line);
    // Scripts can tell from the exit code alone whether the handler ran to the end.
    if (view.status === 'failed' || view.status === 'dead') {
      throw new CliError(`invocation ${id} is ${view.status}${view.error ? `: ${view.error.code}: ${view.error.message}` : ''}`);
    }
  },
};
