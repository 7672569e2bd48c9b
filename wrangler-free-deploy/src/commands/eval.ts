import fs from 'node:fs/promises';
import path from 'node:path';
import { EvalRequest } from '../../../src/schemas/api.ts';
import { zodMessage } from '../../../src/schemas/zod-message.ts';
import { CliError, UsageError } from '../cli-error.ts';
import { httpErrorOf } from '../client.ts';
import { parseCommand, readStream, type Command } from '../context.ts';

const LANGUAGE_BY_EXTENSION: Record<string, EvalRequest['language']> = {
  '.sh': 'bash',
  '.js': 'javascript',
  '.mjs': 'javascript',
  '.cjs': 'javascript',
  '.ts': 'typescript',
  '.mts': 'typescript',
  '.py': 'python',
};

export const evaluate: Command = {
  name: 'eval',
  summary: 'run a snippet once in a fresh sandbox (file, or - for stdin)',
  usage: 'fn eval <file|-> [--language javascript|typescript|python|bash] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, { language: { type: 'string' } }, { min: 1, max: 1 });
    const source = positionals[0]!;
    const code = source === '-' ? (await readStream(ctx.io.stdin)).toString('utf8') : await fs.readFile(path.resolve(ctx.io.cwd, source), 'utf8').catch((err: Error) => {
      throw new CliError(`cannot read ${source}: ${err.message}`);
    });
    const language = values.language ?? LANGUAGE_BY_EXTENSION[path.extname(source).toLowerCase()] ?? 'javascript';
    const request = EvalRequest.safeParse({ language, code });
    if (!request.success) throw new UsageError(zodMessage(request.error, 'eval'));

    const res = await ctx.client().fetch('POST', '/v1/eval', { json: request.data });
    if (res.status === 404) throw new CliError(`this gateway (${ctx.client().baseUrl}) has no /v1/eval endpoint yet; upgrade snapfn`);
    if (!res.ok) throw await httpErrorOf(res);
    const result: unknown = await res.json().catch(() => {
      throw new CliError('the gateway answered /v1/eval with something that is not JSON');
    });
    const printable = result as { stdout?: unknown; stderr?: unknown };
    if (!values.json && typeof printable.stdout === 'string') {
      ctx.io.stdout.write(printable.stdout);
      if (typeof printable.stderr === 'string') ctx.io.stderr.write(printable.stderr);
      return;
    }
    ctx.out(JSON.stringify(result, null, 2));
  },
};
