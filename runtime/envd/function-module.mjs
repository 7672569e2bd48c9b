// Loads the function from /fn with Node's own resolution and decides which
// handler shape it has. The deploy wrote /fn/.snapfn/function.json naming
// the module (and, with `fn deploy --handler file.export`, the export).

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { lambdaShape, snapfnShape, workersShape } from './handler-shapes.mjs';

const FUNCTION_DIR = process.env.SNAPFN_FUNCTION_DIR ?? '/fn';
const META_FILE = path.join(FUNCTION_DIR, '.snapfn', 'function.json');

export const SHAPES_HINT =
  'write `export default async function (request) { ... }` (snapfn), `export default { async fetch(request, env, ctx) { ... } }` (a Workers module, Hono and itty-router apps included) or `export const handler = async (event, context) => { ... }` / `exports.handler = ...` (AWS Lambda), or name the export with --handler file.export';

function readMeta() {
  try {
    return JSON.parse(fs.readFileSync(META_FILE, 'utf8'));
  } catch {
    // A template built from a single bundle before function.json existed.
    return { entry: 'handler.mjs' };
  }
}

/** An own property only: a router exported as the default may be a Proxy that answers every name. */
function ownOf(value, name) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && Object.hasOwn(value, name) ? value[name] : undefined;
}

/** An export of an ES module, or a property of a CommonJS module's module.exports. */
function exportOf(mod, name) {
  if (name in mod && mod[name] !== undefined) return mod[name];
  return ownOf(mod.default, name);
}

function hasFetch(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.fetch === 'function';
}

function describe(value) {
  if (value === undefined) return 'missing';
  return value === null ? 'null' : `a ${typeof value}`;
}

/** The callable shape of `mod`, or an error naming what was found and what is accepted. */
function shapeOf(mod, wanted) {
  if (wanted !== undefined) {
    const value = wanted === 'default' ? mod.default : exportOf(mod, wanted);
    if (hasFetch(value)) return workersShape(value);
    if (typeof value !== 'function') return { error: `the export ${wanted} is ${describe(value)}, not a function or a Workers module; ${SHAPES_HINT}` };
    return wanted === 'default' ? snapfnShape(value) : lambdaShape(value);
  }
  if (hasFetch(mod.default)) return workersShape(mod.default);
  const handler = exportOf(mod, 'handler');
  // A CommonJS module's module.exports arrives as `default`: only a function there is snapfn's own shape.
  if (typeof mod.default === 'function' && typeof handler !== 'function') return snapfnShape(mod.default);
  if (typeof handler === 'function') return lambdaShape(handler);
  if (hasFetch(handler)) return workersShape(handler);
  return { error: `the module exports no handler (its default export is ${describe(mod.default)}); ${SHAPES_HINT}` };
}

function hook(mod, shape, name) {
  const value = exportOf(mod, name) ?? ownOf(shape.target, name);
  return typeof value === 'function' ? value : undefined;
}

/**
 * { shape, call, scheduled, config, beforeSnapshot, afterRestore, loadError }.
 * `loadError` set means nothing else can be used.
 */
export async function loadFunction() {
  const meta = readMeta();
  // Relative reads (`fs.readFileSync('templates/page.html')`) resolve as on a laptop run from the directory.
  try {
    process.chdir(FUNCTION_DIR);
  } catch {}
  let mod;
  try {
    mod = await import(pathToFileURL(path.join(FUNCTION_DIR, meta.entry)).href);
  } catch (err) {
    return { loadError: loadErrorOf(err) };
  }
  let config = null;
  try {
    const json = JSON.stringify(exportOf(mod, 'config'));
    config = json === undefined ? null : JSON.parse(json);
  } catch (err) {
    return { loadError: { code: 'invalid_config', message: `the config export is not JSON: ${err?.message ?? err}` } };
  }
  const shape = shapeOf(mod, meta.export);
  if (shape.error) return { config, loadError: { code: 'invalid_handler', message: shape.error } };
  return {
    ...shape,
    config,
    beforeSnapshot: hook(mod, shape, 'beforeSnapshot'),
    afterRestore: hook(mod, shape, 'afterRestore'),
    loadError: null,
  };
}

/** A native addon that cannot load names the library it lacked (dlopen's own words). */
function loadErrorOf(err) {
  const message = String(err?.message ?? err);
  const missing = /([^\s:]+\.so[.\d]*): cannot open shared object file/.exec(message);
  if (missing) {
    return { code: 'native_library_missing', message: `a native addon needs ${missing[1]}, which neither the function directory nor the sandbox's root filesystem has: ${message.split('\n')[0]}`, stack: err?.stack };
  }
  return { code: 'load_failed', message, stack: err?.stack };
}
