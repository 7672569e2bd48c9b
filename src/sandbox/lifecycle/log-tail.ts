import fs from 'node:fs/promises';

/** The last lines of a process's log, for an error message (a boot or restore that failed). */
export async function logTail(file: string, lines = 3): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-lines).join(' | ').slice(0, 600) || '(no output)';
}
