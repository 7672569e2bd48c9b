import { z } from 'zod';

/** What native/uffd/uffd-server.c prints on stdout, one JSON object per line. */

export const ReadyEvent = z.object({ event: z.literal('ready'), socket: z.string() });

export const ConnectedEvent = z.object({
  event: z.literal('connected'),
  regions: z.number().int(),
  bytes: z.number(),
  peer_pid: z.number().int(),
  prefetch_pages: z.number().int(),
});
export type ConnectedEvent = z.infer<typeof ConnectedEvent>;

export const PrefetchedEvent = z.object({
  event: z.literal('prefetched'),
  pages: z.number().int(),
  skipped: z.number().int(),
  ms: z.number(),
});
export type PrefetchedEvent = z.infer<typeof PrefetchedEvent>;

export const ExitEvent = z.object({
  event: z.literal('exit'),
  /** peer_gone: the VM went away (normal end); signal: close(); uffd_closed: should not happen. */
  reason: z.enum(['peer_gone', 'signal', 'uffd_closed']),
  faults: z.number(),
  copied_pages: z.number(),
  copy_ioctls: z.number(),
  prefetched_pages: z.number(),
  prefetch_skipped: z.number(),
  zero_pages: z.number(),
  removed_pages: z.number(),
  spurious: z.number(),
  eagain: z.number(),
  eexist: z.number(),
  recorded: z.number(),
  fault_ns: z.number(),
  serve_ms: z.number(),
});
export type UffdServerStats = z.infer<typeof ExitEvent>;

export const ServerEvent = z.discriminatedUnion('event', [ReadyEvent, ConnectedEvent, PrefetchedEvent, ExitEvent]);
export type ServerEvent = z.infer<typeof ServerEvent>;

/** Parses one stdout line; anything that is not a known event is ignored. */
export function parseServerEvent(line: string): ServerEvent | undefined {
  try {
    const parsed = ServerEvent.safeParse(JSON.parse(line));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
