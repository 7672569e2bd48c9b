import { InvocationLogEntry, LogsResponse } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { CliError, UsageError } from '../cli-error.ts';
import { intOption, parseCommand, type Command, type CommandContext } from '../context.ts';
import { logEntryLines } from '../format.ts';
import { ndjsonLines } from '../ndjson.ts';

function print(entry: InvocationLogEntry, json: boolean | undefined, ctx: CommandContext): void {
  if (json) ctx.out(JSON.stringify(entry));
  else for (const line of logEntryLines(entry)) ctx.out(line);
}

export const logs: Command = {
  name: 'logs',
  summary: "show a function's invocation log (-f keeps following it)",
  usage: 'fn logs <name> [-f|--follow] [-n|--limit N] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, { follow: { type: 'boolean', short: 'f' }, limit: { type: 'string', short: 'n' } }, { min: 1, max: 1 });
    const name = positionals[0]!;
    if (!FunctionName.safeParse(name).success) throw new UsageError(`invalid function name ${JSON.stringify(name)}`);
    const limit = intOption('limit', values.limit) ?? 50;
    if (limit < 1 || limit > 1000) throw new UsageError('--limit must be between 1 and 1000');
    const client = ctx.client();
    if (!values.follow) {
      const { entries } = await client.call(LogsResponse, 'GET', `/v1/functions/${name}/logs?limit=${limit}`);
      if (entries.length === 0 && !values.json) ctx.out(`no invocations of ${name} logged yet`);
      for (const entry of entries) print(entry, values.json, ctx);
      return;
    }
    const res = await client.ok('GET', `/v1/functions/${name}/logs?follow=1&limit=${limit}`);
    for await (const line of ndjsonLines(res)) {
      const entry = InvocationLogEntry.safeParse(line);
      if (entry.success) print(entry.data, values.json, ctx);
      else if ((line as { type?: string }).type === 'error') throw new CliError(`log stream failed: ${JSON.stringify((line as { error?: unknown }).error)}`);
    }
  },
};
