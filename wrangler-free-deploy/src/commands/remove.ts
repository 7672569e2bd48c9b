import { DeleteResponse } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { UsageError } from '../cli-error.ts';
import { parseCommand, type Command } from '../context.ts';

export const remove: Command = {
  name: 'rm',
  summary: 'delete a function with all its versions, secrets and logs',
  usage: 'fn rm <name> [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, {}, { min: 1, max: 1 });
    const name = positionals[0]!;
    if (!FunctionName.safeParse(name).success) throw new UsageError(`invalid function name ${JSON.stringify(name)}`);
    const result = await ctx.client().call(DeleteResponse, 'DELETE', `/v1/functions/${name}`);
    ctx.out(values.json ? JSON.stringify(result) : `deleted ${name}`);
  },
};
