import { FunctionView, ScheduleRequest } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { zodMessage } from '../../../src/schemas/zod-message.ts';
import { UsageError } from '../cli-error.ts';
import { parseCommand, type Command } from '../context.ts';
import { functionSummary } from '../format.ts';

export const schedule: Command = {
  name: 'schedule',
  summary: 'set or remove a function\'s cron schedule: a new version on the same template (no rebuild)',
  usage: "fn schedule <name> '<cron>' [--tz ZONE] | fn schedule <name> --off [--json]",
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, { tz: { type: 'string' }, off: { type: 'boolean' } }, { min: 1, max: 2 });
    const [name, cron] = positionals as [string, string | undefined];
    if (!FunctionName.safeParse(name).success) throw new UsageError(`invalid function name ${JSON.stringify(name)}`);
    if (values.off ? cron !== undefined || values.tz !== undefined : cron === undefined) throw new UsageError(`usage: ${this.usage}`);
    const setting = values.off ? null : values.tz === undefined ? cron! : { cron: cron!, tz: values.tz };
    const request = ScheduleRequest.safeParse({ schedule: setting });
    if (!request.success) throw new UsageError(zodMessage(request.error));
    const fn = await ctx.client().call(FunctionView, 'PUT', `/v1/functions/${name}/schedule`, { json: request.data });
    ctx.out(values.json ? JSON.stringify(fn, null, 2) : `updated ${functionSummary(fn)}`);
  },
};
