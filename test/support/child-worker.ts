import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const ENTRY = fileURLToPath(new URL('./queue-worker-entry.ts', import.meta.url));

export interface ChildWorker {
  process: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Spawns test/support/queue-worker-entry.ts and resolves once it prints "ready". */
export async function spawnWorker(env: Record<string, string>, readyTimeoutMs = 20_000): Promise<ChildWorker> {
  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-4000)));
  const exited = once(child, 'exit');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker not ready after ${readyTimeoutMs} ms: ${output}`)), readyTimeoutMs);
    child.stdout!.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code} before ready: ${output}`));
    });
  });
  return {
    process: child,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
