import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** The languages that have a template of their own; typescript runs on the javascript one. */
export const RUNTIME_LANGUAGES = ['javascript', 'python', 'bash'] as const;
export type RuntimeLanguage = (typeof RUNTIME_LANGUAGES)[number];

const RUNTIME_DIR = fileURLToPath(new URL('../../runtime/eval/', import.meta.url));
const RUNNERS: Record<RuntimeLanguage, string> = { javascript: 'js-runner.cjs', python: 'py-runner.py', bash: 'bash-runner.sh' };

/**
 * Writes the single-file handler bundle of one language's eval template to
 * `dir/<language>.mjs`: runtime/eval/eval-handler.mjs and its helpers, with
 * the language and its runner's source in a banner. The bundle's bytes are
 * what the template id hashes, so an unchanged runtime reuses the template.
 */
export async function writeEvalBundle(language: RuntimeLanguage, dir: string): Promise<string> {
  const runnerSource = await fs.readFile(path.join(RUNTIME_DIR, RUNNERS[language]), 'utf8');
  const out = await build({
    entryPoints: [path.join(RUNTIME_DIR, 'eval-handler.mjs')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    logLevel: 'silent',
    banner: { js: `globalThis.SNAPFN_EVAL = ${JSON.stringify({ language, runnerSource })};` },
  });
  const text = out.outputFiles[0]!.text;
  const file = path.join(dir, `${language}.mjs`);
  await fs.mkdir(dir, { recursive: true });
  const existing = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (existing !== text) {
    // Another service process may be reading it for its own (identical) build.
    const tmp = `${file}.${process.pid}.tmp`;
    await fs.writeFile(tmp, text);
    await fs.rename(tmp, file);
  }
  return file;
}
