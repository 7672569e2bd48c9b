import { Readable, Writable } from 'node:stream';
import { main } from '../../wrangler-free-deploy/src/cli.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

/** Runs the CLI's main() in-process with captured stdio: same code as bin/fn.js, minus the process. */
export async function runCli(argv: string[], options: { env?: NodeJS.ProcessEnv; stdin?: string; cwd?: string } = {}): Promise<CliRun> {
  const stdout = new Collect();
  const stderr = new Collect();
  const code = await main(argv, {
    env: options.env ?? {},
    stdout,
    stderr,
    stdin: Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]),
    cwd: options.cwd ?? process.cwd(),
  });
  return { code, stdout: stdout.text, stderr: stderr.text };
}
