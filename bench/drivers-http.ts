// The driver column's HTTP rows (issue 17): the same scenarios as the engine
// level ones of bench/drivers.ts, through a real gateway on that driver as
// `npm start` runs it (fn deploy, then GET /fn/<name> over loopback).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { loadConfig } from '../src/config.ts';
import { summarize, timed, type LatencySummary } from './stats.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FN_BIN = path.join(ROOT, 'wrangler-free-deploy/bin/fn.js');

export interface DriverHttpBench {
  /** `fn deploy` to answered, template build included. */
  deploy_ms: number;
  /** A fresh sandbox restored per request (no pool). */
  restore: LatencySummary;
  /** One keepWarm sandbox reused. */
  keep_warm: LatencySummary;
}

export async function benchDriverHttp(driver: string, o: { n: number; functionName: string; progress: (m: string) => void }): Promise<DriverHttpBench | undefined> {
  const dir = path.join(ROOT, 'functions', o.functionName);
  if (!(await fs.access(dir).then(() => true, () => false))) return undefined;
  const home = await fs.mkdtemp(path.join(os.tmpdir(), `snapfn-bench-http-${driver}-`));
  const before = process.env.SNAPFN_DRIVER;
  // createEngine reads the driver from the environment, as `npm start` does.
  process.env.SNAPFN_DRIVER = driver;
  const { startSnapfn } = await import('../src/snapfn.ts');
  const env = { ...process.env, SNAPFN_HOME: home, PORT: '0', SNAPFN_API_KEY: '', SNAPFN_POOL_SIZE: '0', SNAPFN_MAX_SANDBOXES: '2' };
  const snapfn = await startSnapfn({ config: loadConfig(env), examplesDir: false, queue: false, eval: false, hostname: '127.0.0.1', log: () => {} });
  try {
    const deploy = async (name: string, flags: string[]) => {
      const r = await execa('node', [FN_BIN, 'deploy', dir, '--name', name, ...flags], { env: { ...process.env, FN_URL: snapfn.url, FN_API_KEY: '' }, reject: false });
      if (r.exitCode !== 0) throw new Error(`${driver}: fn deploy ${name}: ${r.stderr.trim()}`);
    };
    const get = async (name: string) => {
      const res = await fetch(`${snapfn.url}/fn/${name}?name=bench`);
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`${driver}: GET /fn/${name}: ${res.status}`);
    };
    o.progress(`${driver}: HTTP deploy, restore per request x${o.n}`);
    const [deployMs] = await timed(async () => {
      await deploy('bench-http', []);
      await get('bench-http');
    });
    const restore: number[] = [];
    for (let i = 0; i < o.n; i++) restore.push((await timed(() => get('bench-http')))[0]);
    o.progress(`${driver}: HTTP keepWarm reuse x${o.n}`);
    await deploy('bench-http-warm', ['--keep-warm']);
    await get('bench-http-warm');
    const warm: number[] = [];
    for (let i = 0; i < o.n; i++) {
      await new Promise((r) => setTimeout(r, 100));
      warm.push((await timed(() => get('bench-http-warm')))[0]);
    }
    return { deploy_ms: Math.round(deployMs), restore: summarize(restore), keep_warm: summarize(warm) };
  } finally {
    await snapfn.close();
    if (before === undefined) delete process.env.SNAPFN_DRIVER;
    else process.env.SNAPFN_DRIVER = before;
    await fs.rm(home, { recursive: true, force: true });
  }
}
