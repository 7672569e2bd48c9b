import { transform } from 'esbuild';

// A static `import`/`export` at the start of a line; `import(` and `import.meta` do not count.
const MODULE_SYNTAX = /^\s*(import\s*[\w{*'"]|export\s)/m;

/**
 * Turns typescript (types stripped) and javascript with static imports
 * (rewritten to `require`) into a classic script for the javascript runner,
 * which runs scripts so that the last expression's value can be returned.
 *
 * This runs on the host, but it only parses and prints the code: nothing of
 * it executes here. Plain javascript is passed through untouched.
 */
export async function toScript(language: 'javascript' | 'typescript', code: string): Promise<{ code: string } | { error: string }> {
  const moduleSyntax = MODULE_SYNTAX.test(code);
  if (language === 'javascript' && !moduleSyntax) return { code };
  try {
    const out = await transform(code, {
      loader: language === 'typescript' ? 'ts' : 'js',
      target: 'node20',
      logLevel: 'silent',
      ...(moduleSyntax ? { format: 'cjs' as const } : {}),
    });
    return { code: out.code };
  } catch (err) {
    const first = (err as { errors?: Array<{ text: string; location?: { line: number; column: number } | null }> }).errors?.[0];
    if (!first) return { error: `SyntaxError: ${(err as Error).message}` };
    const where = first.location ? ` (line ${first.location.line}, column ${first.location.column + 1})` : '';
    return { error: `SyntaxError: ${first.text}${where}` };
  }
}
