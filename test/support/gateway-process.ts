import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
export { freePort } from '../../src/queue/free-port.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export interface GatewayProcess {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly url: string;
  /** The last few KiB of its stdout and stderr, for failure messages. */
  output(): string;
  /** SIGKILL: no cleanup at all, like a crash or an OOM kill. */
  crash(): Promise<void>;
  /** SIGTERM and wait for a clean exit (SIGKILL after `graceMs`); resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/** `npm start` in a child process (node --import tsx src/main.ts), ready once /healthz answers. */
export async function spawnGateway(env: Record<string, string>, port: number, readyTimeoutMs = 90_000): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN], { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-6000));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (gone) throw new Error(`the gateway exited before it was ready: ${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the gateway was not ready after ${readyTimeoutMs} ms: ${output}`);
    }
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    if (res?.ok) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    process: child,
    pid: child.pid!,
    url,
    output: () => output,
    async crash() {
      if (!gone) child.kill('SIGKILL');
      await exited;
    },
    async stop(graceMs = 60_000) {
      if (gone) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const [code] = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

