import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';

/**
 * A template's working set: the guest memory pages a resume touches before
 * the sandbox is ready (E2B's "prefetch" trace, REAP's working set). The page
 * server copies them in right after the hand-off instead of waiting for a
 * fault per page.
 *
 * Recorded by resuming the template with the page server in record mode (it
 * writes each page's memory-file offset, in first-fault order) and keeping
 * only pages every recorded run touched: pages one run touched by accident
 * (a timer, a randomised allocation) are not worth copying into every sandbox.
 */
export const WORKING_SET_FILE = 'working-set.json';

export const WorkingSet = z
  .object({
    version: z.literal(1),
    /** Memory-file offsets (bytes, page-aligned), in the order the first run faulted them. */
    offsets: z.array(z.number().int().nonnegative()),
    pageSize: z.number().int().positive(),
    /** Pages each recorded run faulted, for judging how stable the set is. */
    pagesPerRun: z.array(z.number().int().nonnegative()),
    recordedAt: z.string(),
  })
  .strict();
export type WorkingSet = z.infer<typeof WorkingSet>;

export function workingSetPath(templateDir: string): string {
  return path.join(templateDir, WORKING_SET_FILE);
}

/** Reads a page server record file: one decimal offset per line, duplicates dropped. */
export async function readRecording(file: string): Promise<number[]> {
  const text = await fs.readFile(file, 'utf8');
  const seen = new Set<number>();
  const offsets: number[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const offset = Number(line);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`${file}: not a page offset: ${JSON.stringify(line.slice(0, 40))}`);
    if (!seen.has(offset)) {
      seen.add(offset);
      offsets.push(offset);
    }
  }
  return offsets;
}

/** Offsets present in every run, in the first run's order. */
export function intersectRuns(runs: readonly (readonly number[])[]): number[] {
  const [first, ...rest] = runs;
  if (!first) return [];
  const others = rest.map((run) => new Set(run));
  const seen = new Set<number>();
  return first.filter((offset) => {
    if (seen.has(offset) || !others.every((s) => s.has(offset))) return false;
    seen.add(offset);
    return true;
  });
}

/**
 * Turns two (or more) recorded runs into the template's working-set.json.
 * Runs are record files or offset arrays. Written atomically: a resume that
 * reads it concurrently sees the old file or the new one.
 */
export async function recordWorkingSet(
  runs: readonly (string | readonly number[])[],
  options: { templateDir: string; pageSize?: number },
): Promise<WorkingSet> {
  if (runs.length < 2) throw new Error(`a working set needs at least two recorded runs, got ${runs.length}`);
  const offsets = await Promise.all(runs.map((run) => (typeof run === 'string' ? readRecording(run) : [...run])));
  const workingSet: WorkingSet = {
    version: 1,
    offsets: intersectRuns(offsets),
    pageSize: options.pageSize ?? 4096,
    pagesPerRun: offsets.map((run) => run.length),
    recordedAt: new Date().toISOString(),
  };
  const file = workingSetPath(options.templateDir);
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.writeFile(tmp, JSON.stringify(workingSet));
  await fs.rename(tmp, file);
  return workingSet;
}

/** The template's working set, or undefined when it has none (or an unreadable one: prefetch is an optimisation). */
export async function loadWorkingSet(templateDir: string): Promise<WorkingSet | undefined> {
  const text = await fs.readFile(workingSetPath(templateDir), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const parsed = WorkingSet.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
