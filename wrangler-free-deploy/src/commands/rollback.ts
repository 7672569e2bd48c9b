import { FunctionView, RollbackRequest } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { UsageError } from '../cli-error.ts';
import { parseCommand, type Command } from '../context.ts';
import { functionSummary } from '../format.ts';

export const rollback: Command = {
  name: 'rollback',
  summary: 'make an older version active (default: the one before the active one)',
  usage: 'fn rollback <name> [version] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, {}, { min: 1, max: 2 });
    const [name, versionArg] = positionals as [string, string | undefined];
    if (!FunctionName.safeParse(name).success) throw new UsageError(`invalid function name ${JSON.stringify(name)}`);
    const request = RollbackRequest.safeParse(versionArg === undefined ? {} : { version: Number(versionArg.replace(/^v/, '')) });
    if (!request.success) throw new UsageError(`version must be a positive whole number, got ${JSON.stringify(versionArg)}`);
    const fn = await ctx.client().call(FunctionView, 'POST', `/v1/functions/${name}/rollback`, { json: request.data });
    ctx.out(values.json ? JSON.stringify(fn, null, 2) : `rolled back: ${functionSummary(fn)}`);
  },
};
