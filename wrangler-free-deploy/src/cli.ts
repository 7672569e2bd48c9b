import { CliError, UsageError } from './cli-error.ts';
import { GatewayClient } from './client.ts';
import type { CliIO, Command, CommandContext } from './context.ts';
import { deploy } from './commands/deploy.ts';
import { env } from './commands/env.ts';
import { evaluate } from './commands/eval.ts';
import { gc } from './commands/gc.ts';
import { invocation } from './commands/invocation.ts';
import { invoke } from './commands/invoke.ts';
import { list } from './commands/list.ts';
import { logs } from './commands/logs.ts';
import { remove } from './commands/remove.ts';
import { rollback } from './commands/rollback.ts';
import { publish } from './commands/publish.ts';
import { schedule } from './commands/schedule.ts';
import { topics } from './commands/topics.ts';
import { versions } from './commands/versions.ts';
import { worker } from './commands/worker.ts';

const COMMANDS: Command[] = [deploy, invoke, invocation, list, logs, rollback, versions, env, schedule, publish, topics, remove, evaluate, gc, worker];
/** Other names some commands answer to. */
const ALIASES: Record<string, Command> = { list, remove, status: invocation };

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'fn: deploy and run snapfn functions',
    '',
    'usage: fn <command> [options]',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'environment:',
    '  FN_URL      gateway URL (default http://127.0.0.1:8080)',
    '  FN_API_KEY  API key, when the gateway has SNAPFN_API_KEY set',
    '',
    'every command takes --json (machine-readable output) and --help.',
  ].join('\n');
}

function defaultIO(): CliIO {
  return { env: process.env, stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: process.cwd() };
}

/** Runs one `fn` invocation and returns its exit code; failures are one `fn: <reason>` line on stderr. */
export async function main(argv: string[], io: CliIO = defaultIO()): Promise<number> {
  let client: GatewayClient | undefined;
  const ctx: CommandContext = {
    io,
    client: () => (client ??= GatewayClient.fromEnv(io.env)),
    out: (line) => void io.stdout.write(`${line}\n`),
    note: (line) => void io.stderr.write(`${line}\n`),
  };
  try {
    const [name, ...rest] = argv;
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      ctx.out(usage());
      return name === undefined ? 2 : 0;
    }
    const command = COMMANDS.find((c) => c.name === name) ?? ALIASES[name];
    if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    if (rest.includes('--help') || rest.includes('-h')) {
      ctx.out(`usage: ${command.usage}\n\n${command.summary}`);
      return 0;
    }
    await command.run(rest, ctx);
    return 0;
  } catch (err) {
    const cliError = err instanceof CliError ? err : new CliError((err as Error)?.message ?? String(err));
    io.stderr.write(`fn: ${cliError.message.replace(/\s*\n\s*/g, ' ')}\n`);
    return cliError.exitCode;
  }
}
