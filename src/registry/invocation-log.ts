import fs from 'node:fs/promises';
import path from 'node:path';
import { InvocationLogEntry } from '../schemas/api.ts';
import { KeyedMutex } from './keyed-mutex.ts';

export interface InvocationLogOptions {
  /** Size at which the current file becomes `invocations.1.jsonl`; the log never exceeds about twice this. */
  maxBytes?: number | undefined;
}

const CURRENT = 'invocations.jsonl';
const PREVIOUS = 'invocations.1.jsonl';
const DEFAULT_MAX_BYTES = 1024 * 1024;

interface Follower {
  push(entry: InvocationLogEntry): void;
  end(): void;
}

/**
 * Per-function JSON-lines log of invocations with bounded size, plus live
 * followers. Followers are fed in-process because every append happens in
 * this process; that avoids fs.watch and its platform quirks.
 */
export class InvocationLog {
  readonly #dirOf: (name: string) => string;
  readonly #maxBytes: number;
  readonly #writes = new KeyedMutex();
  readonly #followers = new Map<string, Set<Follower>>();

  constructor(dirOf: (name: string) => string, options: InvocationLogOptions = {}) {
    this.#dirOf = dirOf;
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  }

  /** Appends one entry. A function deleted meanwhile silently drops it rather than resurrecting its directory. */
  async append(name: string, entry: InvocationLogEntry): Promise<void> {
    const line = this.#fit(entry);
    const dir = this.#dirOf(name);
    await this.#writes.run(name, async () => {
      try {
        const size = await fs.stat(path.join(dir, CURRENT)).then((s) => s.size, () => 0);
        if (size > 0 && size + line.length > this.#maxBytes) await fs.rename(path.join(dir, CURRENT), path.join(dir, PREVIOUS));
        await fs.appendFile(path.join(dir, CURRENT), line, { flag: 'a' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    });
    for (const follower of this.#followers.get(name) ?? []) follower.push(entry);
  }

  /** The newest `limit` entries, oldest first. */
  async tail(name: string, limit: number): Promise<InvocationLogEntry[]> {
    const dir = this.#dirOf(name);
    const read = (file: string) => fs.readFile(path.join(dir, file), 'utf8').catch(() => '');
    const [previous, current] = await Promise.all([read(PREVIOUS), read(CURRENT)]);
    const entries: InvocationLogEntry[] = [];
    for (const line of `${previous}\n${current}`.split('\n')) {
      if (!line) continue;
      // A line cut short by a crash is skipped, not fatal.
      try {
        const parsed = InvocationLogEntry.safeParse(JSON.parse(line));
        if (parsed.success) entries.push(parsed.data);
      } catch {
        continue;
      }
    }
    return entries.slice(-limit);
  }

  /** The newest `limit` entries, then every new one as it is appended, until `signal` aborts or the function is deleted. */
  async *follow(name: string, options: { limit: number; signal?: AbortSignal }): AsyncGenerator<InvocationLogEntry> {
    const queue: InvocationLogEntry[] = [];
    let ended = false;
    let wake: (() => void) | undefined;
    const follower: Follower = {
      push: (entry) => {
        queue.push(entry);
        wake?.();
      },
      end: () => {
        ended = true;
        wake?.();
      },
    };
    // Subscribe before reading the tail so nothing appended in between is lost; duplicates are dropped by id.
    let set = this.#followers.get(name);
    if (!set) this.#followers.set(name, (set = new Set()));
    set.add(follower);
    const onAbort = () => follower.end();
    options.signal?.addEventListener('abort', onAbort);
    try {
      const initial = await this.tail(name, options.limit);
      const seen = new Set(initial.map((e) => e.id));
      yield* initial;
      while (!ended && !options.signal?.aborted) {
        const next = queue.shift();
        if (next) {
          if (!seen.has(next.id)) yield next;
          continue;
        }
        seen.clear();
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      set.delete(follower);
      if (set.size === 0 && this.#followers.get(name) === set) this.#followers.delete(name);
    }
  }

  /** Live followers of `name` (for leak checks: a client that disconnects must not leave one behind). */
  followerCount(name: string): number {
    return this.#followers.get(name)?.size ?? 0;
  }

  closeFollowers(name: string): void {
    for (const follower of this.#followers.get(name) ?? []) follower.end();
  }

  close(): void {
    for (const set of this.#followers.values()) for (const follower of set) follower.end();
  }

  /** One JSON line, shrunk when a chatty handler would otherwise blow the size bound in a single entry. */
  #fit(entry: InvocationLogEntry): string {
    const line = `${JSON.stringify(entry)}\n`;
    const budget = Math.floor(this.#maxBytes / 4);
    if (Buffer.byteLength(line) <= budget) return line;
    const kept: InvocationLogEntry['logs'] = [];
    let used = 1024;
    for (const log of entry.logs) {
      const size = Buffer.byteLength(log.text) + 64;
      if (used + size > budget) break;
      kept.push(log);
      used += size;
    }
    return `${JSON.stringify({ ...entry, logs: kept, logsTruncated: true })}\n`;
  }
}
