import { z } from 'zod';
import type { PhaseTimings } from '../orchestrator/types.ts';
import { FunctionName } from '../schemas/function-config.ts';
import { CallbackDelivery, InvocationMode, InvocationOutcome, InvocationStatusName, WireRequest } from '../schemas/invocation.ts';

export { InvocationMode, InvocationStatusName };

/** Every key snapfn puts in Redis starts with this (BullMQ's included). */
export const KEY_PREFIX = 'snapfn';

/** One queue per function: per-function limits, global concurrency and schedulers come for free. */
export function queueName(functionName: string): string {
  return `fn-${functionName}`;
}

/**
 * Which deployment to run. Sync and async invocations pin the version that
 * was active when they were accepted; scheduled runs say 'active' because
 * their job template outlives deploys.
 */
export const DeploymentRef = z.object({
  name: FunctionName,
  version: z.union([z.number().int().positive(), z.literal('active')]),
});
export type DeploymentRef = z.infer<typeof DeploymentRef>;

/**
 * What a job carries. Read back from Redis, so it is validated by the
 * worker: a job written by an older gateway must fail loudly, not half-run.
 */
export const InvocationJobData = z.object({
  /**
   * Equal to the job id for enqueued jobs. Absent in schedule runs: their
   * job template is shared by every tick, and each tick's job id (unique) is
   * its invocation id.
   */
  invocationId: z.string().min(1).optional(),
  deployment: DeploymentRef,
  request: WireRequest,
  mode: InvocationMode,
  /** ms since the epoch; absent in schedule runs (the tick time is the job's own timestamp + delay). */
  enqueuedAt: z.number().optional(),
  /**
   * Sync jobs: ms since the epoch when their caller stops waiting. A worker
   * that takes the job later does not run it (nobody would get the result);
   * absent in jobs of older gateways.
   */
  expiresAt: z.number().optional(),
  /** Async invocations: POSTed the result when the invocation ends (checked against SNAPFN_CALLBACK_ALLOW when accepted and when sent). */
  callbackUrl: z.string().max(2048).optional(),
  /** W3C trace context of the enqueuing request, so the worker's spans join its trace. */
  trace: z.record(z.string(), z.string()).optional(),
});
export type InvocationJobData = z.infer<typeof InvocationJobData>;

/** The job's return value: the engine's result plus how long the job sat in the queue. */
export interface InvocationJobResult {
  outcome: InvocationOutcome;
  timings: PhaseTimings & { queueWaitMs: number };
  /** 1 for the first attempt. */
  attempt: number;
  /** Which worker ran it (host:pid), for debugging a multi-node install. */
  worker: string;
  /** The version that ran (schedule runs resolve 'active' when they start); absent in results of older workers. */
  version?: number;
  /** The response, sealed under the secrets key (src/secrets/at-rest.ts); `outcome.response` then holds only its status. */
  sealedResponse?: string;
}


export interface InvocationStatus {
  id: string;
  function: string;
  /**
   * queued: waiting for a worker (also between retries, with `error` = the last failure);
   * active: running; completed: ran, handler succeeded; failed: a sync run that failed
   * (its caller got the error; never retried); dead: an async or schedule run that failed
   * its last attempt (the dead letter).
   */
  status: InvocationStatusName;
  mode: InvocationMode;
  /** The version that ran, or the one the job is pinned to; unknown for a schedule run that has not started. */
  version?: number;
  /** Attempts made so far (finished ones, successful or not). */
  attempts: number;
  maxAttempts: number;
  result?: InvocationJobResult;
  error?: { code: string; message: string };
  enqueuedAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Where its callback stands, when it has one. */
  callback?: CallbackDelivery;
}
