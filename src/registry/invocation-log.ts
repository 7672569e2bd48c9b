import fs from 'node:fs/promises';
import path from 'node:path';
import { InvocationLogEntry } from '../schemas/api.ts';
import { KeyedMutex } from './keyed-mutex.ts';

export interface InvocationLogOptions {
  /** Size at which the current file becomes `invocations.1.jsonl`; the log never exceeds about twice this. */
  maxBytes?: number | undefined;
}

/** The log holds what handlers printed and threw (redacted of secrets, still the handler's data): owner only. */
const FILE_MODE = 0o600;
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
  /**
   * The current file of each function, kept open with its size: an append
   * is one write, not a stat, an open, a write and a close (it is on every
   * invocation's path).
   */
  readonly #files = new Map<string, { handle: fs.FileHandle; size: number }>();

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
        let file = await this.#open(name, dir);
        const bytes = Buffer.byteLength(line);
        if (file.size > 0 && file.size + bytes > this.#maxBytes) {
          await this.#closeFile(name);
          await fs.rename(path.join(dir, CURRENT), path.join(dir, PREVIOUS));
          file = await this.#open(name, dir);
        }
        await file.handle.write(line);
        file.size += bytes;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    });
    for (const follower of this.#followers.get(name) ?? []) follower.push(entry);
  }

  /** The newest `limit` entries, oldest first. */
  async tail(name: string, limit: number): Promise<InvocationLogEntry[]> {
    // Behind the appends already asked for: the gateway answers a direct
    // invocation without waiting for its entry, yet a read after the answer sees it.
    await this.#writes.run(name, async () => {});
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

  /** The function is going away: its followers end and its open file is closed (a later append finds no directory and is dropped). */
  closeFollowers(name: string): void {
    for (const follower of this.#followers.get(name) ?? []) follower.end();
    void this.#writes.run(name, () => this.#closeFile(name));
  }

  close(): void {
    for (const set of this.#followers.values()) for (const follower of set) follower.end();
    for (const name of [...this.#files.keys()]) void this.#closeFile(name);
  }

  async #open(name: string, dir: string): Promise<{ handle: fs.FileHandle; size: number }> {
    const open = this.#files.get(name);
    if (open) return open;
    // 'a' creates the file in an existing directory; a deleted function's directory is gone: ENOENT.
    const handle = await fs.open(path.join(dir, CURRENT), 'a', FILE_MODE);
    // A log created by an older snapfn (0644) is closed to others too.
    await handle.chmod(FILE_MODE);
    const file = { handle, size: (await handle.stat()).size };
    this.#files.set(name, file);
    return file;
  }

  async #closeFile(name: string): Promise<void> {
    const file = this.#files.get(name);
    this.#files.delete(name);
    await file?.handle.close().catch(() => {});
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
