import type { z } from 'zod';

type Issue = z.core.$ZodIssue;

function describe(issue: Issue, parentPath: PropertyKey[] = []): string {
  const path = [...parentPath, ...issue.path];
  // A bad record key or union member hides the useful message one level down.
  const nested = 'issues' in issue && Array.isArray(issue.issues) ? (issue.issues as unknown[]).flat() : [];
  const inner = nested[0] as Issue | undefined;
  if (issue.code === 'invalid_key' && inner) return describe({ ...inner, path: [] } as Issue, path);
  const where = path.length > 0 ? `${path.map(String).join('.')}: ` : '';
  return `${where}${issue.message}`;
}

/** One line for humans, e.g. `config.timeoutMs: Too small: expected number to be >=100; name: ...`. */
export function zodMessage(error: z.ZodError, subject?: string): string {
  const lines = error.issues.slice(0, 3).map((issue) => describe(issue));
  const more = error.issues.length > 3 ? ` (+${error.issues.length - 3} more)` : '';
  const text = `${lines.join('; ')}${more}`.replace(/\s*\n\s*/g, ' ');
  return subject ? `invalid ${subject}: ${text}` : text;
}
