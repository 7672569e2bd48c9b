import { FunctionList } from '../../../src/schemas/api.ts';
import { parseCommand, type Command } from '../context.ts';
import { poolCell, table } from '../format.ts';

export const list: Command = {
  name: 'ls',
  summary: 'list deployed functions',
  usage: 'fn ls [--json]',
  async run(args, ctx) {
    const { values } = parseCommand(this, args, {}, { min: 0, max: 0 });
    const { functions } = await ctx.client().call(FunctionList, 'GET', '/v1/functions');
    if (values.json) return ctx.out(JSON.stringify(functions, null, 2));
    if (functions.length === 0) return ctx.out('no functions deployed (fn deploy <dir>)');
    ctx.out(
      table(
        ['NAME', 'VERSION', 'NETWORK', 'POOL', 'UPDATED', 'URL'],
        functions.map((fn) => [fn.name, fn.activeVersion === null ? '-' : `v${fn.activeVersion}`, fn.active?.config.network ?? '-', poolCell(fn), fn.updatedAt.replace(/\.\d+Z$/, 'Z'), fn.url]),
      ),
    );
  },
};
