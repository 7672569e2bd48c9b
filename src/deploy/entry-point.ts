import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { InvalidHandlerError } from './deploy-errors.ts';

const INDEX_FILES = ['index.ts', 'index.mts', 'index.js', 'index.mjs', 'index.cjs', 'index.cts'];
const MODULE_EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'];
const MAIN_EXTENSIONS = ['', ...MODULE_EXTENSIONS, '/index.ts', '/index.js', '/index.mjs', '/index.cjs'];

const PackageJson = z.object({ main: z.string().min(1).optional() }).loose();

async function isFile(file: string): Promise<boolean> {
  return fs.stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
}

async function readPackageMain(dir: string): Promise<string | undefined> {
  const text = await fs.readFile(path.join(dir, 'package.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new InvalidHandlerError('package.json is not valid JSON');
  }
  const parsed = PackageJson.safeParse(json);
  if (!parsed.success) throw new InvalidHandlerError('package.json "main" must be a non-empty string');
  return parsed.data.main;
}

/** The handler's entry file: package.json "main" when set, else index.(ts|js|mjs). */
export async function findEntryPoint(dir: string): Promise<string> {
  const root = path.resolve(dir);
  const main = await readPackageMain(root);
  if (main !== undefined) {
    const base = path.resolve(root, main);
    if (!base.startsWith(root + path.sep)) throw new InvalidHandlerError(`package.json "main" (${main}) points outside the bundle`);
    for (const ext of MAIN_EXTENSIONS) if (await isFile(base + ext)) return base + ext;
    throw new InvalidHandlerError(`package.json "main" is ${main}, but the bundle has no such file`);
  }
  for (const name of INDEX_FILES) if (await isFile(path.join(root, name))) return path.join(root, name);
  throw new InvalidHandlerError(`no entry point: add ${INDEX_FILES.join(', ')} or set "main" in package.json`);
}

/** `fn deploy --handler`: `file.export`, as Lambda writes it (`index.handler`, `src/app.default`). */
export const HANDLER_SETTING = /^(?<file>[A-Za-z0-9_@/.-]+)\.(?<export>[A-Za-z_$][A-Za-z0-9_$]*)$/;

/** Resolves a handler setting to the module file (extension optional) and export name. */
export async function resolveHandlerSetting(dir: string, setting: string): Promise<{ file: string; export: string }> {
  const match = HANDLER_SETTING.exec(setting);
  if (!match?.groups) throw new InvalidHandlerError(`handler ${JSON.stringify(setting)} is not of the form file.export (e.g. index.handler)`);
  const root = path.resolve(dir);
  const base = path.resolve(root, match.groups.file!);
  if (!base.startsWith(root + path.sep)) throw new InvalidHandlerError(`handler ${setting} points outside the function directory`);
  for (const ext of ['', ...MODULE_EXTENSIONS]) if (await isFile(base + ext)) return { file: base + ext, export: match.groups.export! };
  throw new InvalidHandlerError(`handler ${setting}: the directory has no module ${match.groups.file} (tried ${MODULE_EXTENSIONS.join(', ')})`);
}
