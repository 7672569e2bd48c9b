import fs from 'node:fs/promises';
import type { FunctionStore, VersionRecord } from '../registry/function-store.ts';

/** snapfn's own, a Workers module, an AWS Lambda handler; unknown when the source does not say plainly. */
export type HandlerShape = 'snapfn' | 'workers' | 'lambda' | 'unknown';

export interface HandlerInfo {
  shape: HandlerShape;
  /** `entry` or `entry.export` as .snapfn/function.json names it. */
  handler: string;
}

const META_PATH = '.snapfn/function.json';
/** Enough of any hand-written entry module; a bundled megabyte would only be searched for nothing. */
const MAX_ENTRY_BYTES = 512 * 1024;

/*
 * envd decides the shape from the loaded module's exports, inside the
 * sandbox, and the host keeps no record of its answer. The console reads
 * it off the entry's source instead, with the same precedence as envd's
 * shapeOf() (runtime/envd/function-module.mjs): a default export with
 * fetch, then a default function, then `handler`. A static reading, so a
 * default export built at run time shows as unknown rather than a guess.
 */
export function shapeOfSource(source: string, exportName: string | undefined): HandlerShape {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
  if (exportName !== undefined && exportName !== 'default') return 'lambda';
  const byDefault = defaultKind(code);
  if (byDefault === 'workers') return 'workers';
  if (exportName === 'default') return byDefault === 'function' ? 'snapfn' : 'unknown';
  const lambda = /\bexport\s+(const|let|var|async\s+function|function)\s+handler\b|\b(module\.)?exports\.handler\s*=|\bexport\s*\{[^}]*\bhandler\s*(,|\})/.test(code);
  if (byDefault === 'function' && !lambda) return 'snapfn';
  return lambda ? 'lambda' : 'unknown';
}

/** What the default export is, as far as the source says: a Workers-style object, a function, or not plain. */
function defaultKind(code: string): 'workers' | 'function' | undefined {
  const router = /\bnew\s+Hono\b|\b(Auto)?Router\s*\(|\bIttyRouter\s*\(/;
  if (/\bexport\s+default\s*\{[\s\S]*?\bfetch\b|\bmodule\.exports\s*=\s*\{[\s\S]*?\bfetch\b/.test(code)) return 'workers';
  if (/\bexport\s+default\s+(async\s+)?(function\b|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)|\bmodule\.exports\s*=\s*(async\s+)?(function\b|\([^)]*\)\s*=>)/.test(code)) return 'function';
  // `export default app` or a bundler's `export { index_default as default }`: look at the binding.
  const name = /\bexport\s+default\s+([A-Za-z_$][\w$]*)\s*;?\s*$/m.exec(code)?.[1] ?? /\bexport\s*\{[^}]*?\b([A-Za-z_$][\w$]*)\s+as\s+default\b/.exec(code)?.[1];
  if (!name) return undefined;
  const id = name.replace(/\$/g, '\\$');
  if (new RegExp(`\\b(async\\s+)?function\\s*\\*?\\s*${id}\\s*\\(`).test(code)) return 'function';
  const binding = new RegExp(`\\b(?:var|let|const)\\s+${id}\\s*=\\s*([^;]{0,200})`).exec(code)?.[1] ?? '';
  if (/^\{/.test(binding) && new RegExp(`\\b(?:var|let|const)\\s+${id}\\s*=\\s*\\{[\\s\\S]*?\\bfetch\\b`).test(code)) return 'workers';
  if (router.test(binding)) return 'workers';
  if (/^(async\s*)?(function\b|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)/.test(binding)) return 'function';
  return undefined;
}

/** Reads the handler of a version from its stored source; cached by content hash (sources never change). */
export class HandlerShapes {
  readonly #store: FunctionStore;
  readonly #cache = new Map<string, Promise<HandlerInfo>>();

  constructor(store: FunctionStore) {
    this.#store = store;
  }

  of(version: VersionRecord): Promise<HandlerInfo> {
    let info = this.#cache.get(version.bundleHash);
    if (!info) {
      info = this.#read(version.bundleHash).catch(() => ({ shape: 'unknown' as const, handler: '?' }));
      this.#cache.set(version.bundleHash, info);
    }
    return info;
  }

  async #read(hash: string): Promise<HandlerInfo> {
    const manifest = await this.#store.sources.manifest(hash);
    // Versions from before whole sources were kept: one bundled module, always snapfn's loader.
    if (!manifest) return { shape: 'unknown', handler: 'handler.mjs' };
    const fileOf = (p: string) => manifest.find((e) => e.path === p);
    const metaEntry = fileOf(META_PATH);
    const meta = metaEntry ? (JSON.parse(await fs.readFile(this.#store.blobs.path(metaEntry.sha256), 'utf8')) as { entry?: string; export?: string }) : {};
    const entry = meta.entry ?? 'handler.mjs';
    const handler = meta.export ? `${entry}.${meta.export}` : entry;
    const file = fileOf(entry);
    if (!file || file.size > MAX_ENTRY_BYTES) return { shape: 'unknown', handler };
    const source = await fs.readFile(this.#store.blobs.path(file.sha256), 'utf8');
    return { shape: shapeOfSource(source, meta.export), handler };
  }
}
