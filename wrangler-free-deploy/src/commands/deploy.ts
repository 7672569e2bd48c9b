import path from 'node:path';
import { packDirectory } from '../../../src/deploy/pack-directory.ts';
import { DeployEvent, DeployRequest } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { zodMessage } from '../../../src/schemas/zod-message.ts';
import { CliError, UsageError } from '../cli-error.ts';
import { httpErrorOf } from '../client.ts';
import { intOption, keyValues, parseCommand, type Command } from '../context.ts';
import { formatBytes, functionSummary, progressLine } from '../format.ts';
import { ndjsonLines } from '../ndjson.ts';

/** Guards this machine's memory; the server applies its own (smaller) SNAPFN_MAX_BUNDLE_BYTES. */
const CLIENT_MAX_PACK_BYTES = 256 * 1024 * 1024;

export const deploy: Command = {
  name: 'deploy',
  summary: 'bundle a handler directory and deploy it as a new version',
  usage: 'fn deploy <dir> [--name NAME] [--env K=V]... [--secret K[=V]]... [--keep-warm] [--timeout MS] [--memory MB] [--schedule CRON] [--network none|egress] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(
      this,
      args,
      {
        name: { type: 'string' },
        env: { type: 'string', multiple: true },
        secret: { type: 'string', multiple: true },
        'keep-warm': { type: 'boolean' },
        timeout: { type: 'string' },
        memory: { type: 'string' },
        schedule: { type: 'string' },
        network: { type: 'string' },
      },
      { min: 1, max: 1 },
    );
    const dir = path.resolve(ctx.io.cwd, positionals[0]!);
    const name = values.name ?? path.basename(dir).toLowerCase();
    if (!values.name && !FunctionName.safeParse(name).success) throw new UsageError(`the directory name ${JSON.stringify(name)} is not a valid function name; pass --name`);
    const config = {
      ...(values['keep-warm'] ? { keepWarm: true } : {}),
      ...(values.timeout !== undefined ? { timeoutMs: intOption('timeout', values.timeout) } : {}),
      ...(values.memory !== undefined ? { memoryMb: intOption('memory', values.memory) } : {}),
      ...(values.schedule !== undefined ? { schedule: values.schedule } : {}),
      ...(values.network !== undefined ? { network: values.network } : {}),
    };
    const env = keyValues('env', values.env);
    const secrets = keyValues('secret', values.secret, ctx.io.env);
    // Validate everything but the files before packing a possibly large directory.
    const checked = DeployRequest.safeParse({ name, files: { 'index.js': '' }, config, env, secrets });
    if (!checked.success) throw new UsageError(zodMessage(checked.error));

    const packed = await packDirectory(dir, { maxBytes: CLIENT_MAX_PACK_BYTES }).catch((err: Error) => {
      throw new CliError(err.message);
    });
    const request = DeployRequest.safeParse({ name, files: packed.files, config, env, secrets });
    if (!request.success) throw new CliError(zodMessage(request.error, 'deploy'));
    if (!values.json) {
      const hoisted = packed.hoisted.length > 0 ? `, with ${packed.hoisted.join(', ')} from a parent node_modules` : '';
      ctx.out(`deploying ${name} from ${dir} (${Object.keys(packed.files).length} files, ${formatBytes(packed.bytes)}${hoisted})`);
    }

    const client = ctx.client();
    const res = await client.fetch('POST', '/v1/functions', { json: request.data });
    if (!res.ok) throw await httpErrorOf(res);
    if (!(res.headers.get('content-type') ?? '').includes('ndjson')) throw new CliError(`unexpected answer from the gateway (${res.headers.get('content-type')})`);
    for await (const line of ndjsonLines(res)) {
      const event = DeployEvent.safeParse(line);
      if (!event.success) throw new CliError(`unexpected deploy event from the gateway: ${zodMessage(event.error)}`);
      const e = event.data;
      if (e.type === 'progress') {
        if (!values.json) ctx.out(progressLine(e.step, e.detail));
      } else if (e.type === 'error') {
        throw new CliError(`deploy of ${name} failed: ${e.error.code}: ${e.error.message}`);
      } else {
        ctx.out(values.json ? JSON.stringify(e.function, null, 2) : `deployed ${functionSummary(e.function)}`);
        return;
      }
    }
    throw new CliError(`the gateway closed the deploy stream of ${name} without a result; check fn ls`);
  },
};
