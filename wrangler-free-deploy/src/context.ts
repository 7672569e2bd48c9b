import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './cli-error.ts';
import type { GatewayClient } from './client.ts';

export interface CliIO {
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  cwd: string;
}

export interface CommandContext {
  io: CliIO;
  client: () => GatewayClient;
  /** Print a line to stdout. */
  out(line: string): void;
  /** Print a line to stderr (progress notes, never results). */
  note(line: string): void;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(args: string[], ctx: CommandContext): Promise<void>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Common flags every command takes. */
const COMMON = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const satisfies Options;

/** util.parseArgs with the common flags, positional-count checks and UsageErrors instead of TypeErrors. */
export function parseCommand<O extends Options>(command: Pick<Command, 'name' | 'usage'>, args: string[], options: O, positionals: { min: number; max: number }) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${command.name}: ${(err as Error).message.split('\n')[0]}`);
  }
  const count = parsed.positionals.length;
  if (!(parsed.values as { help?: boolean }).help && (count < positionals.min || count > positionals.max)) {
    throw new UsageError(`usage: ${command.usage}`);
  }
  return parsed;
}

/** `--env K=V` style lists as a record; a bare `K` takes its value from `fallbackEnv` (keeps secrets out of argv). */
export function keyValues(flag: string, items: string[] | undefined, fallbackEnv?: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items ?? []) {
    const eq = item.indexOf('=');
    if (eq > 0) {
      out[item.slice(0, eq)] = item.slice(eq + 1);
      continue;
    }
    const value = eq < 0 && fallbackEnv ? fallbackEnv[item] : undefined;
    if (value === undefined) throw new UsageError(`--${flag} ${item}: expected KEY=VALUE${fallbackEnv ? ' (or KEY with KEY set in your environment)' : ''}`);
    out[item] = value;
  }
  return out;
}

export function intOption(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

export async function readStream(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}
