import fs from 'node:fs/promises';
import path from 'node:path';
import { isBuiltin } from 'node:module';
import * as esbuild from 'esbuild';
import { FUNCTION_META_PATH, hashSourceDir, sourceDirStats, writeFunctionMeta } from '../sandbox/template/function-source.ts';
import { BundleFailedError, InvalidHandlerError } from './deploy-errors.ts';
import { findEntryPoint, resolveHandlerSetting } from './entry-point.ts';
import { HANDLER_SHAPES_HINT } from './handler-shapes.ts';

/**
 * Lets the transpiled TypeScript entry call `require`, `__dirname` and
 * `__filename` as its CommonJS-era code expects; aliased so nothing clashes
 * with the handler's own declarations of those names.
 */
const TS_BANNER = [
  "import { createRequire as __snapfnCreateRequire } from 'module';",
  "import { fileURLToPath as __snapfnFileURLToPath } from 'url';",
  "import { dirname as __snapfnDirname } from 'path';",
  'const require = __snapfnCreateRequire(import.meta.url);',
  'const __snapfnFilename = __snapfnFileURLToPath(import.meta.url);',
  'const __snapfnDir = __snapfnDirname(__snapfnFilename);',
].join(' ');

const TS_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.tsx']);

/**
 * Leaves every package import to Node at run time, but only once esbuild
 * has found it from the importing file (as Node would): a dependency that
 * is not in the upload fails the deploy here, not the first request.
 */
const packagesResolvedButExternal: esbuild.Plugin = {
  name: 'snapfn-packages-external',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, async (args) => {
      // The nested resolve below comes back through here: let esbuild's own resolver answer it.
      if (args.pluginData === 'checking') return undefined;
      if (isBuiltin(args.path)) return { path: args.path, external: true };
      const found = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: 'checking' });
      if (found.errors.length > 0) return { errors: found.errors };
      return { path: args.path, external: true };
    });
  },
};

export interface PreparedSource {
  /** The function directory, ready to be mounted at /fn. */
  dir: string;
  /** hashSourceDir(dir). */
  hash: string;
  /** The module envd loads, relative to dir. */
  entry: string;
  /** The export named by the deploy, if any. */
  export?: string;
  files: number;
  bytes: number;
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
 * The function's own TypeScript, transpiled into one ES module written next
 * to the entry (so `import.meta.url`, `__dirname` and relative asset paths
 * of the entry's directory stay what they were). Packages stay external:
 * Node resolves them from the function's node_modules at run time, native
 * addons and the files they read included.
 */
async function transpileEntry(dir: string, entry: string): Promise<{ output: string; exports: string[] }> {
  const parsed = path.parse(entry);
  const output = path.join(parsed.dir, `.snapfn.${parsed.name}.mjs`);
  let result: esbuild.BuildResult<{ metafile: true; write: true }>;
  try {
    result = await esbuild.build({
      absWorkingDir: dir,
      entryPoints: [entry],
      outfile: path.join(dir, output),
      bundle: true,
      plugins: [packagesResolvedButExternal],
      // The function's own addons load at run time, from beside the entry.
      external: ['*.node'],
      platform: 'node',
      target: 'node20',
      format: 'esm',
      banner: { js: TS_BANNER },
      define: { __dirname: '__snapfnDir', __filename: '__snapfnFilename' },
      metafile: true,
      write: true,
      logLevel: 'silent',
      legalComments: 'none',
    });
  } catch (err) {
    if (isBuildFailure(err)) throw new BundleFailedError(firstMessage(err.errors));
    throw err;
  }
  // Only the function's own files are bundled; one from above the upload would not exist in the sandbox.
  const outside = Object.keys(result.metafile.inputs).find((input) => input.startsWith('../') || path.isAbsolute(input));
  if (outside) throw new BundleFailedError(`an import resolved outside the uploaded directory (${outside}); include it in the directory`);
  const out = Object.values(result.metafile.outputs).find((o) => o.entryPoint !== undefined);
  return { output, exports: out?.exports ?? [] };
}

/** Static exports of an ES module entry, read by esbuild without running it (empty for CommonJS: envd decides there). */
async function esmExports(dir: string, entry: string): Promise<string[] | undefined> {
  try {
    const result = await esbuild.build({ absWorkingDir: dir, entryPoints: [entry], bundle: true, plugins: [packagesResolvedButExternal], external: ['*.node'], platform: 'node', format: 'esm', write: false, metafile: true, logLevel: 'silent', outfile: 'out.mjs' });
    const input = result.metafile.inputs[entry];
    if (input?.format !== 'esm') return undefined;
    return Object.values(result.metafile.outputs).find((o) => o.entryPoint !== undefined)?.exports;
  } catch (err) {
    if (isBuildFailure(err)) throw new BundleFailedError(firstMessage(err.errors));
    throw err;
  }
}

/**
 * Turns an uploaded directory into the function directory, in place: the
 * files stay where they are (assets, node_modules, `.node` binaries), a
 * TypeScript entry is transpiled beside itself, and
 * `.snapfn/function.json` names the module and export envd loads. Nothing
 * of the upload runs here; the handler's shape is confirmed in the sandbox.
 */
export async function prepareSource(dir: string, options: { handler?: string | undefined } = {}): Promise<PreparedSource> {
  const root = path.resolve(dir);
  const setting = options.handler ? await resolveHandlerSetting(root, options.handler) : undefined;
  const entryFile = setting?.file ?? (await findEntryPoint(root));
  let entry = path.relative(root, entryFile).split(path.sep).join('/');
  let exports: string[] | undefined;
  if (TS_EXTENSIONS.has(path.extname(entryFile))) {
    const transpiled = await transpileEntry(root, entry);
    entry = transpiled.output.split(path.sep).join('/');
    exports = transpiled.exports;
  } else if (!entryFile.endsWith('.cjs')) {
    exports = await esmExports(root, entry);
  }
  const wanted = setting?.export;
  if (exports !== undefined) {
    const shown = path.relative(root, entryFile);
    if (wanted !== undefined && !exports.includes(wanted)) throw new InvalidHandlerError(`${shown} has no export named ${wanted} (from the handler setting ${options.handler})`);
    if (wanted === undefined && !exports.includes('default') && !exports.includes('handler')) throw new InvalidHandlerError(`${shown} exports no handler: ${HANDLER_SHAPES_HINT}`);
  }
  await fs.rm(path.join(root, path.dirname(FUNCTION_META_PATH)), { recursive: true, force: true });
  await writeFunctionMeta(root, { entry, ...(wanted !== undefined ? { export: wanted } : {}) });
  const stats = await sourceDirStats(root);
  return { dir: root, hash: await hashSourceDir(root), entry, ...(wanted !== undefined ? { export: wanted } : {}), ...stats };
}
