import { FunctionView } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { TopicsRequest, TopicsView } from '../../../src/schemas/invocation.ts';
import { zodMessage } from '../../../src/schemas/zod-message.ts';
import { UsageError } from '../cli-error.ts';
import { parseCommand, type Command } from '../context.ts';
import { functionSummary, table } from '../format.ts';

export const topics: Command = {
  name: 'topics',
  summary: "list topics and their subscribers, or set a function's subscriptions (a new version, same template)",
  usage: 'fn topics [--json] | fn topics <name> <topic>... | fn topics <name> --none',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, { none: { type: 'boolean' } }, { min: 0, max: 33 });
    if (positionals.length === 0) {
      if (values.none) throw new UsageError(`usage: ${this.usage}`);
      const view = await ctx.client().call(TopicsView, 'GET', '/v1/topics');
      if (values.json) return ctx.out(JSON.stringify(view, null, 2));
      if (view.topics.length === 0) return ctx.out('no topics (subscribe with fn deploy --topic T or fn topics <name> <topic>)');
      return ctx.out(table(['TOPIC', 'SUBSCRIBERS'], view.topics.map((t) => [t.topic, t.subscribers.join(', ')])));
    }
    const [name, ...wanted] = positionals as [string, ...string[]];
    if (!FunctionName.safeParse(name).success) throw new UsageError(`invalid function name ${JSON.stringify(name)}`);
    if (values.none ? wanted.length > 0 : wanted.length === 0) throw new UsageError(`usage: ${this.usage}`);
    const request = TopicsRequest.safeParse({ topics: wanted });
    if (!request.success) throw new UsageError(zodMessage(request.error));
    const fn = await ctx.client().call(FunctionView, 'PUT', `/v1/functions/${name}/topics`, { json: request.data });
    ctx.out(values.json ? JSON.stringify(fn, null, 2) : `updated ${functionSummary(fn)}`);
  },
};
