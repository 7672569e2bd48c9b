import os from 'node:os';
import { context, propagation, SpanStatusCode, trace, type Context } from '@opentelemetry/api';
import { UnrecoverableError, type Job } from 'bullmq';
import { NotFoundError, SnapfnError } from '../errors.ts';
import type { Deployment, InvocationEngine } from '../orchestrator/types.ts';
import { zodMessage } from '../schemas/zod-message.ts';
import { redactOutcome, sealResult } from '../secrets/at-rest.ts';
import type { SecretsKey } from '../secrets/envelope.ts';
import { CallerGoneError, EngineRefusedError, InvocationFailedError } from './errors.ts';
import type { SettledInvocation } from '../invocation/callbacks/callback-outbox.ts';
import { policyOf } from '../invocation/policies.ts';
import { InvocationJobData, type InvocationJobResult, type InvocationMode } from './job-data.ts';

const tracer = trace.getTracer('snapfn');

export type ResolveDeployment = (name: string, version: number | 'active') => Promise<Deployment>;

/** Method and path (no query) of the invoked request, for log lines. */
export interface InvokedRequest {
  method: string;
  path: string;
}

/** One attempt's outcome, for the gateway's invocation log (every attempt, not only the last). */
export interface InvocationResultEvent {
  invocationId: string;
  functionName: string;
  version: number;
  mode: InvocationMode;
  result: InvocationJobResult;
  /** A failed async/schedule attempt that BullMQ will try again. */
  willRetry: boolean;
  /** Attempts the job has in total. Optional: events of older workers (result stream) lack it, as `request`. */
  maxAttempts?: number;
  request?: InvokedRequest;
}

/**
 * An attempt that ended without an outcome: the deployment could not be
 * resolved, the engine threw (over capacity for too long, shutting down),
 * Redis trouble. BullMQ retries or dead-letters it like a failed outcome.
 */
export interface InvocationAttemptFailedEvent {
  invocationId: string;
  functionName: string;
  /** Known when the deployment was resolved, or pinned by the job. */
  version?: number;
  mode: InvocationMode;
  attempt: number;
  maxAttempts: number;
  willRetry: boolean;
  error: { code: string; message: string };
  /** The HTTP status the error stands for (500 for errors snapfn did not type). */
  status: number;
  request: InvokedRequest;
  queueWaitMs: number;
}

export interface ProcessorDeps {
  engine: Pick<InvocationEngine, 'invoke'>;
  resolveDeployment: ResolveDeployment;
  onResult?: (event: InvocationResultEvent) => void | Promise<void>;
  onAttemptFailed?: (event: InvocationAttemptFailedEvent) => void | Promise<void>;
  onError: (err: Error) => void;
  workerId?: string;
  /** Jobs whose caller this node already answered 503 (InvocationQueue.isAbandoned): not run. */
  isAbandoned?: (invocationId: string) => boolean;
  /** An invocation with a callback URL ended (no attempt follows): its callback is queued. Never fails the job. */
  onSettled?: (settled: SettledInvocation) => Promise<void>;
  /** Seals the response in the return value Redis keeps (src/secrets/at-rest.ts); without it the response is stored as is. */
  secretsKey?: SecretsKey;
}

export const DEFAULT_WORKER_ID = `${os.hostname()}:${process.pid}`;

/**
 * Runs one job through the engine. Failed outcomes of async and schedule
 * runs throw (BullMQ retries with backoff, then dead-letters); a sync run
 * returns its failed outcome, because its caller is waiting for exactly that.
 */
export async function processInvocationJob(job: Job<InvocationJobData, InvocationJobResult>, deps: ProcessorDeps): Promise<InvocationJobResult> {
  const startedAt = Date.now();
  const parsed = InvocationJobData.safeParse(job.data);
  if (!parsed.success) throw new UnrecoverableError(zodMessage(parsed.error, 'job data'));
  const data = parsed.data;
  const invocationId = job.id!;
  // Before any hook or span: the gateway has logged what its caller got.
  if (deps.isAbandoned?.(invocationId)) throw new CallerGoneError(invocationId, 'abandoned');
  const policy = policyOf(data.mode);
  if (policy.callerWaits) {
    if (data.expiresAt !== undefined && startedAt > data.expiresAt) throw new CallerGoneError(invocationId, 'expired');
  }
  const attempt = job.attemptsMade + 1;
  const readyAt = readyTime(job, data);
  const queueWaitMs = Math.max(0, startedAt - readyAt);
  const attributes = { 'fn.name': data.deployment.name, 'invocation.id': invocationId, 'invocation.mode': data.mode, 'queue.attempt': attempt };

  const parent: Context = data.trace ? propagation.extract(context.active(), data.trace) : context.active();
  tracer.startSpan('queue wait', { startTime: readyAt, attributes }, parent).end(startedAt);

  const maxAttempts = job.opts.attempts ?? 1;
  const request = invokedRequest(data.request.method, data.request.url);
  // Hooks are awaited so the log entry exists by the time the job reads as finished; they never fail the job.
  const hook = async (what: string, run: () => void | Promise<void>) => {
    await Promise.resolve()
      .then(run)
      .catch((err: Error) => deps.onError(new Error(`${what} hook of ${invocationId} failed: ${err.message}`)));
  };

  const settle = async (end: Pick<SettledInvocation, 'version' | 'result' | 'error'>) => {
    if (!deps.onSettled || data.callbackUrl === undefined || !policy.callbacks) return;
    const settled: SettledInvocation = { invocationId, functionName: data.deployment.name, mode: data.mode, attempts: attempt, callbackUrl: data.callbackUrl, ...end };
    await hook('onSettled', () => deps.onSettled!(settled));
  };

  return tracer.startActiveSpan('queue job', { attributes }, parent, async (span) => {
    let version = typeof data.deployment.version === 'number' ? data.deployment.version : undefined;
    let outcomeReported = false;
    try {
      const deployment = await resolve(deps.resolveDeployment, data.deployment.name, data.deployment.version);
      version = deployment.version;
      span.setAttribute('fn.version', deployment.version);
      const invoked = await deps.engine.invoke(deployment, data.request, { invocationId });
      // Before anything keeps it (hooks, failed reason, span, return value): no secret value reaches Redis.
      const outcome = redactOutcome(deployment, invoked.outcome);
      const { timings } = invoked;
      const result: InvocationJobResult = { outcome, timings: { ...timings, queueWaitMs }, attempt, worker: deps.workerId ?? DEFAULT_WORKER_ID, version: deployment.version };
      const throwIt = !outcome.ok && policy.retries;
      const willRetry = throwIt && attempt < maxAttempts;
      outcomeReported = true;
      if (deps.onResult) {
        await hook('onResult', () => deps.onResult!({ invocationId, functionName: deployment.name, version: deployment.version, mode: data.mode, result, willRetry, maxAttempts, request }));
      }
      if (!willRetry) await settle({ version: deployment.version, result });
      if (!outcome.ok) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error.code });
      if (throwIt && !outcome.ok) throw new InvocationFailedError(outcome.error);
      return deps.secretsKey ? sealResult(deps.secretsKey, invocationId, result) : result;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      if (!outcomeReported && deps.onAttemptFailed) {
        const typed = err instanceof SnapfnError;
        const error = typed ? { code: err.code, message: err.message } : { code: 'queue_error', message: (err as Error).message };
        const willRetry = !(err instanceof UnrecoverableError) && attempt < maxAttempts;
        await hook('onAttemptFailed', () =>
          deps.onAttemptFailed!({
            invocationId,
            functionName: data.deployment.name,
            ...(version ? { version } : {}),
            mode: data.mode,
            attempt,
            maxAttempts,
            willRetry,
            error,
            status: typed ? err.status : 500,
            request,
            queueWaitMs,
          }),
        );
        if (!willRetry) await settle({ version, error });
      }
      if (err instanceof SnapfnError && !(err instanceof InvocationFailedError)) throw new EngineRefusedError(err);
      throw err;
    } finally {
      span.end();
    }
  });
}

function invokedRequest(method: string, url: string): InvokedRequest {
  try {
    return { method, path: new URL(url).pathname };
  } catch {
    return { method, path: url.split('?')[0] ?? url };
  }
}

async function resolve(resolveDeployment: ResolveDeployment, name: string, version: number | 'active'): Promise<Deployment> {
  try {
    return await resolveDeployment(name, version);
  } catch (err) {
    // Removed or never published: no retry will bring it back.
    if (err instanceof NotFoundError) throw new UnrecoverableError(`deployment ${name} v${version} is not available: ${err.message}`);
    throw err;
  }
}

/**
 * When the job became runnable, as well as Redis tells: a schedule run's id
 * carries its tick; an enqueued job its enqueue time (for a retry that
 * includes the earlier attempts and backoffs, which is what its caller saw).
 */
function readyTime(job: Job<InvocationJobData, InvocationJobResult>, data: InvocationJobData): number {
  const tick = /:(\d+)$/.exec(job.id ?? '')?.[1];
  if (data.mode === 'schedule' && tick) return Number(tick);
  return data.enqueuedAt ?? job.timestamp + (job.delay ?? 0);
}
