import { z } from 'zod';
import { TopicList } from './invocation.ts';
import { ScheduleSetting } from './schedule.ts';

/** Function names appear in URLs, netns-free paths and Redis keys: keep them boring. */
export const FunctionName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'function names are 1-63 chars of a-z, 0-9 and "-", starting with a letter');

/** What `export const config = {...}` in a handler (or CLI flags) may set. */
export const FunctionConfig = z
  .object({
    /** Wall-clock limit per invocation; past it the sandbox is killed. */
    timeoutMs: z.number().int().min(100).max(15 * 60_000).default(10_000),
    /** Memory limit of the sandbox (host cgroup), in MiB. */
    memoryMb: z.number().int().min(64).max(8192).default(256),
    /** Re-pause the sandbox after an invocation and reuse it for the next one. */
    keepWarm: z.boolean().default(false),
    /** Outbound internet for the sandbox. The host and other sandboxes stay unreachable either way. */
    network: z.enum(['none', 'egress']).default('none'),
    /** Cron expression (5 or 6 fields), optional time zone; validated with the scheduler's own parser. */
    schedule: ScheduleSetting.optional(),
    /** Require the API key on /fn/:name too. */
    requireAuth: z.boolean().default(false),
    /** A fixed warm pool of pre-restored sandboxes for this function. */
    poolSize: z.number().int().min(0).max(32).optional(),
    /**
     * Without poolSize the pool follows the traffic; this many stay ready after an idle minute
     * (default 0: scale to zero).
     */
    minWarm: z.number().int().min(0).max(32).optional(),
    /**
     * Invocations one sandbox serves at once (Cloud Run's and Knative's container concurrency);
     * logs, env and timeouts stay per invocation. 1: one at a time.
     */
    concurrency: z.number().int().min(1).max(256).default(1),
    /** Max concurrent invocations of this function across all nodes. */
    maxConcurrency: z.number().int().min(1).max(1000).optional(),
    /**
     * The module and export to call, `file.export` (Lambda's notation: `index.handler`); default:
     * package.json "main" or index.*, with the shape detected from its exports.
     */
    handler: z
      .string()
      .max(256)
      .regex(/^[A-Za-z0-9_@/.-]+\.[A-Za-z_$][A-Za-z0-9_$]*$/, 'handler is file.export, e.g. index.handler or src/app.default')
      .optional(),
    /** Topics it subscribes to: each message published to one is one invocation of it (docs/triggers.md). */
    topics: TopicList.optional(),
    /** Max invocations waiting in its queue (beyond: 429); default SNAPFN_MAX_QUEUED_PER_FUNCTION. */
    maxQueued: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict();
export type FunctionConfig = z.infer<typeof FunctionConfig>;
export type FunctionConfigInput = z.input<typeof FunctionConfig>;

export const EnvVars = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'env var names are [A-Za-z_][A-Za-z0-9_]*'), z.string());
export type EnvVars = z.infer<typeof EnvVars>;
