import { VersionList } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { UsageError } from '../cli-error.ts';
import { parseCommand, type Command } from '../context.ts';
import { table } from '../format.ts';

export const versions: Command = {
  name: 'versions',
  summary: "list a function's versions",
  usage: 'fn versions <name> [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, {}, { min: 1, max: 1 });
    const name = positionals[0]!;
    if (!FunctionName.safeParse(name).success) throw new UsageError(`invalid function name ${JSON.stringify(name)}`);
    const { versions: list } = await ctx.client().call(VersionList, 'GET', `/v1/functions/${name}/versions`);
    if (values.json) return ctx.out(JSON.stringify(list, null, 2));
    ctx.out(
      table(
        ['VERSION', 'ACTIVE', 'SOURCE', 'CREATED', 'TEMPLATE'],
        list.map((v) => [`v${v.version}`, v.active ? '*' : '', v.source, v.createdAt.replace(/\.\d+Z$/, 'Z'), v.templateId.slice(0, 12)]),
      ),
    );
  },
};
