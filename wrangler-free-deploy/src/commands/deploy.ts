import path from 'node:path';
import { hashDirectory } from '../../../src/deploy/pack-directory.ts';
import { DeployEvent, DeployRequest } from '../../../src/schemas/api.ts';
import { FunctionName } from '../../../src/schemas/function-config.ts';
import { zodMessage } from '../../../src/schemas/zod-message.ts';
import { CliError, UsageError } from '../cli-error.ts';
import { httpErrorOf } from '../client.ts';
import { intOption, keyValues, parseCommand, type Command } from '../context.ts';
import { deployingLine, functionSummary, progressLine, uploadedLine, uploadingLine, uploadProgressLine } from '../format.ts';
import { ndjsonLines } from '../ndjson.ts';
import { uploadMissingBlobs } from '../upload-blobs.ts';

/** A long upload says how far it got this often (stderr, so also in logs of non-interactive runs). */
const PROGRESS_EVERY_MS = 2000;

export const deploy: Command = {
  name: 'deploy',
  summary: 'upload a function directory (only the files the gateway lacks) and deploy it as a new version',
  usage: 'fn deploy <dir> [--name NAME] [--handler FILE.EXPORT] [--env K=V]... [--secret K[=V]]... [--keep-warm] [--concurrency N] [--timeout MS] [--memory MB] [--schedule CRON] [--topic T]... [--network none|egress] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(
      this,
      args,
      {
        name: { type: 'string' },
        handler: { type: 'string' },
        env: { type: 'string', multiple: true },
        secret: { type: 'string', multiple: true },
        'keep-warm': { type: 'boolean' },
        concurrency: { type: 'string' },
        timeout: { type: 'string' },
        memory: { type: 'string' },
        schedule: { type: 'string' },
        topic: { type: 'string', multiple: true },
        network: { type: 'string' },
      },
      { min: 1, max: 1 },
    );
    const dir = path.resolve(ctx.io.cwd, positionals[0]!);
    const name = values.name ?? path.basename(dir).toLowerCase();
    if (!values.name && !FunctionName.safeParse(name).success) throw new UsageError(`the directory name ${JSON.stringify(name)} is not a valid function name; pass --name`);
    const config = {
      ...(values.handler !== undefined ? { handler: values.handler } : {}),
      ...(values['keep-warm'] ? { keepWarm: true } : {}),
      ...(values.concurrency !== undefined ? { concurrency: intOption('concurrency', values.concurrency) } : {}),
      ...(values.timeout !== undefined ? { timeoutMs: intOption('timeout', values.timeout) } : {}),
      ...(values.memory !== undefined ? { memoryMb: intOption('memory', values.memory) } : {}),
      ...(values.schedule !== undefined ? { schedule: values.schedule } : {}),
      ...(values.topic !== undefined ? { topics: values.topic } : {}),
      ...(values.network !== undefined ? { network: values.network } : {}),
    };
    const env = keyValues('env', values.env);
    const secrets = keyValues('secret', values.secret, ctx.io.env);
    // Validate everything but the files before reading a possibly large directory.
    const checked = DeployRequest.safeParse({ name, files: { 'index.js': '' }, config, env, secrets });
    if (!checked.success) throw new UsageError(zodMessage(checked.error));

    const hashed = await hashDirectory(dir).catch((err: Error) => {
      throw new CliError(err.message);
    });
    const request = DeployRequest.safeParse({ name, manifest: hashed.manifest, config, env, secrets });
    if (!request.success) throw new CliError(zodMessage(request.error, 'deploy'));
    ctx.note(deployingLine(name, dir, hashed));

    const client = ctx.client();
    let noted = Date.now();
    const uploaded = await uploadMissingBlobs(client, hashed, {
      start: (p) => ctx.note(uploadingLine(p, hashed.fileOf.size)),
      progress: (p) => {
        if (Date.now() - noted < PROGRESS_EVERY_MS || p.uploadedBlobs === p.blobs) return;
        noted = Date.now();
        ctx.note(uploadProgressLine(p));
      },
    });
    if (uploaded.blobs > 0) ctx.note(uploadedLine(uploaded));

    const res = await client.fetch('POST', '/v1/functions', { json: request.data });
    if (!res.ok) throw await httpErrorOf(res);
    if (!(res.headers.get('content-type') ?? '').includes('ndjson')) throw new CliError(`unexpected answer from the gateway (${res.headers.get('content-type')})`);
    for await (const line of ndjsonLines(res)) {
      const event = DeployEvent.safeParse(line);
      if (!event.success) throw new CliError(`unexpected deploy event from the gateway: ${zodMessage(event.error)}`);
      const e = event.data;
      if (e.type === 'progress') {
        ctx.note(progressLine(e.step, e.detail));
      } else if (e.type === 'error') {
        throw new CliError(`deploy of ${name} failed: ${e.error.code}: ${e.error.message}`);
      } else {
        // uploadedBytes: what this deploy had to send, so scripts (and tests) can see that a redeploy sent only what changed.
        const result = { ...e.function, uploadedBlobs: uploaded.uploadedBlobs, uploadedBytes: uploaded.uploadedBytes };
        ctx.out(values.json ? JSON.stringify(result, null, 2) : `deployed ${functionSummary(e.function)}`);
        return;
      }
    }
    throw new CliError(`the gateway closed the deploy stream of ${name} without a result; check fn ls`);
  },
};
