import { EnvUpdateRequest, FunctionView } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { zodMessage } from '../../../src/schemas/zod-message.ts';
import { UsageError } from '../cli-error.ts';
import { keyValues, parseCommand, type Command } from '../context.ts';
import { functionSummary } from '../format.ts';

export const env: Command = {
  name: 'env',
  summary: 'change env vars / secrets: a new version on the same template (no rebuild)',
  usage: 'fn env <name> [--env K=V]... [--secret K[=V]]... [--unset K]... [--unset-secret K]... [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(
      this,
      args,
      { env: { type: 'string', multiple: true }, secret: { type: 'string', multiple: true }, unset: { type: 'string', multiple: true }, 'unset-secret': { type: 'string', multiple: true } },
      { min: 1, max: 1 },
    );
    const name = positionals[0]!;
    if (!FunctionName.safeParse(name).success) throw new UsageError(`invalid function name ${JSON.stringify(name)}`);
    const envPatch: Record<string, string | null> = { ...keyValues('env', values.env) };
    for (const key of values.unset ?? []) envPatch[key] = null;
    const secretPatch: Record<string, string | null> = { ...keyValues('secret', values.secret, ctx.io.env) };
    for (const key of values['unset-secret'] ?? []) secretPatch[key] = null;
    const request = EnvUpdateRequest.safeParse({
      ...(Object.keys(envPatch).length > 0 ? { env: envPatch } : {}),
      ...(Object.keys(secretPatch).length > 0 ? { secrets: secretPatch } : {}),
    });
    if (!request.success) throw new UsageError(zodMessage(request.error, 'env update'));
    const fn = await ctx.client().call(FunctionView, 'PUT', `/v1/functions/${name}/env`, { json: request.data });
    ctx.out(values.json ? JSON.stringify(fn, null, 2) : `updated ${functionSummary(fn)}`);
  },
};
