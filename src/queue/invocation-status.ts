import type { Job, JobState } from 'bullmq';
import { policyOf } from '../invocation/policies.ts';
import { parseFailedReason } from './errors.ts';
import type { InvocationJobData, InvocationJobResult, InvocationStatus, InvocationStatusName } from './job-data.ts';

/** The fields of a BullMQ job this mapping reads (a plain object in unit tests). */
export type JobSnapshot = Pick<Job<InvocationJobData, InvocationJobResult | undefined>, 'id' | 'data' | 'returnvalue' | 'failedReason' | 'attemptsMade' | 'opts' | 'timestamp' | 'delay' | 'processedOn' | 'finishedOn'>;

/**
 * BullMQ state -> invocation status. The job can succeed while the
 * invocation failed (a sync or schedule run returns its failed outcome
 * instead of throwing), so `completed` looks at the outcome.
 */
export function invocationStatus(functionName: string, job: JobSnapshot, state: JobState | 'unknown'): InvocationStatus {
  const result = job.returnvalue ?? undefined;
  const pinned = job.data.deployment.version;
  const version = result?.version ?? (typeof pinned === 'number' ? pinned : undefined);
  let status: InvocationStatusName;
  let error: { code: string; message: string } | undefined;
  switch (state) {
    case 'completed':
      status = result && !result.outcome.ok ? 'failed' : 'completed';
      if (result && !result.outcome.ok) error = { code: result.outcome.error.code, message: result.outcome.error.message };
      break;
    case 'failed':
      // BullMQ only moves a job to `failed` when no attempt is left. A sync
      // run gets there when its one attempt threw (not an outcome: engine
      // over capacity, deployment gone): its caller got that error, it is no dead letter.
      status = policyOf(job.data.mode).failedEnd;
      error = parseFailedReason(job.failedReason);
      break;
    case 'active':
      status = 'active';
      break;
    default:
      // waiting, delayed (a backoff between attempts too), prioritized, waiting-children.
      status = 'queued';
      if (job.attemptsMade > 0) error = parseFailedReason(job.failedReason);
  }
  return {
    id: job.id!,
    function: functionName,
    status,
    mode: job.data.mode,
    ...(version !== undefined ? { version } : {}),
    attempts: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? 1,
    ...(result ? { result } : {}),
    ...(error ? { error } : {}),
    enqueuedAt: job.data.enqueuedAt ?? job.timestamp + (job.delay ?? 0),
    ...(job.processedOn ? { startedAt: job.processedOn } : {}),
    ...(job.finishedOn && (state === 'completed' || state === 'failed') ? { finishedAt: job.finishedOn } : {}),
  };
}
