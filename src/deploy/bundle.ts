import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import * as esbuild from 'esbuild';
import { BundleFailedError, InvalidHandlerError, PayloadTooLargeError } from './deploy-errors.ts';

/**
 * Lets bundled CommonJS dependencies call `require` for Node built-ins from
 * an ESM bundle. Aliased so it cannot clash with a handler that imports
 * createRequire itself.
 */
export const REQUIRE_BANNER = "import { createRequire as __snapfnCreateRequire } from 'module'; const require = __snapfnCreateRequire(import.meta.url);";

export interface HandlerBundle {
  file: string;
  bytes: number;
  /** sha256 hex of the bundle. */
  hash: string;
}

function firstMessage(messages: esbuild.Message[]): string {
  const m = messages[0];
  if (!m) return 'esbuild failed without a message';
  const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}: ` : '';
  return `${where}${m.text}`;
}

function isBuildFailure(err: unknown): err is esbuild.BuildFailure {
  return typeof err === 'object' && err !== null && Array.isArray((err as esbuild.BuildFailure).errors);
}

/**
 * Bundles the handler at `entry` (inside `dir`) into one ESM file for Node 20
 * and checks, from esbuild's metafile rather than by running it, that it
 * has a default export. Running untrusted code happens only in the sandbox.
 */
export async function bundleHandler(dir: string, entry: string, outFile: string, options: { maxBytes: number }): Promise<HandlerBundle> {
  let result: esbuild.BuildResult<{ metafile: true; write: true }>;
  try {
    result = await esbuild.build({
      absWorkingDir: path.resolve(dir),
      entryPoints: [entry],
      outfile: outFile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      mainFields: ['module', 'main'],
      banner: { js: REQUIRE_BANNER },
      metafile: true,
      write: true,
      logLevel: 'silent',
      legalComments: 'none',
    });
  } catch (err) {
    if (isBuildFailure(err)) throw new BundleFailedError(firstMessage(err.errors));
    throw err;
  }
  // esbuild walks up from the upload to find node_modules; a handler must not
  // silently pick up whatever happens to be installed above it on the server.
  const outside = Object.keys(result.metafile.inputs).find((input) => input.startsWith('../') || path.isAbsolute(input));
  if (outside) throw new BundleFailedError(`an import resolved outside the uploaded bundle (${outside}); include its package in the bundle's node_modules`);
  const output = Object.values(result.metafile.outputs).find((o) => o.entryPoint !== undefined);
  if (!output) throw new BundleFailedError('esbuild produced no output for the entry point');
  if (!output.exports.includes('default')) {
    throw new InvalidHandlerError(`${path.relative(dir, entry)} has no default export: write \`export default async function (request) { ... }\``);
  }
  const bundle = await fs.readFile(outFile);
  if (bundle.length > options.maxBytes) throw new PayloadTooLargeError(`the bundled handler is ${bundle.length} bytes, over the limit of ${options.maxBytes} (SNAPFN_MAX_BUNDLE_BYTES)`);
  return { file: outFile, bytes: bundle.length, hash: crypto.createHash('sha256').update(bundle).digest('hex') };
}
