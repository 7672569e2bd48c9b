import os from 'node:os';
import { context, propagation, SpanStatusCode, trace, type Context } from '@opentelemetry/api';
import { UnrecoverableError, type Job } from 'bullmq';
import { NotFoundError } from '../errors.ts';
import type { Deployment, InvocationEngine } from '../orchestrator/types.ts';
import { zodMessage } from '../schemas/zod-message.ts';
import { InvocationFailedError } from './errors.ts';
import { InvocationJobData, type InvocationJobResult, type InvocationMode } from './job-data.ts';

const tracer = trace.getTracer('snapfn');

export type ResolveDeployment = (name: string, version: number | 'active') => Promise<Deployment>;

/** One attempt's outcome, for the gateway's invocation log (every attempt, not only the last). */
export interface InvocationResultEvent {
  invocationId: string;
  functionName: string;
  version: number;
  mode: InvocationMode;
  result: InvocationJobResult;
  /** A failed async/schedule attempt that BullMQ will try again. */
  willRetry: boolean;
}

export interface ProcessorDeps {
  engine: Pick<InvocationEngine, 'invoke'>;
  resolveDeployment: ResolveDeployment;
  onResult?: (event: InvocationResultEvent) => void | Promise<void>;
  onError: (err: Error) => void;
  workerId?: string;
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
  const attempt = job.attemptsMade + 1;
  const readyAt = readyTime(job, data);
  const queueWaitMs = Math.max(0, startedAt - readyAt);
  const attributes = { 'fn.name': data.deployment.name, 'invocation.id': invocationId, 'invocation.mode': data.mode, 'queue.attempt': attempt };

  const parent: Context = data.trace ? propagation.extract(context.active(), data.trace) : context.active();
  tracer.startSpan('queue wait', { startTime: readyAt, attributes }, parent).end(startedAt);

  return tracer.startActiveSpan('queue job', { attributes }, parent, async (span) => {
    try {
      const deployment = await resolve(deps.resolveDeployment, data.deployment.name, data.deployment.version);
      span.setAttribute('fn.version', deployment.version);
      const { outcome, timings } = await deps.engine.invoke(deployment, data.request, { invocationId });
      const result: InvocationJobResult = { outcome, timings: { ...timings, queueWaitMs }, attempt, worker: deps.workerId ?? DEFAULT_WORKER_ID };
      const throwIt = !outcome.ok && data.mode !== 'sync';
      const willRetry = throwIt && attempt < (job.opts.attempts ?? 1);
      if (deps.onResult) {
        // Awaited so the log entry exists by the time the job reads as finished; never fails the job.
        await Promise.resolve()
          .then(() => deps.onResult!({ invocationId, functionName: deployment.name, version: deployment.version, mode: data.mode, result, willRetry }))
          .catch((err: Error) => deps.onError(new Error(`onResult hook of ${invocationId} failed: ${err.message}`)));
      }
      if (!outcome.ok) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error.code });
      if (throwIt && !outcome.ok) throw new InvocationFailedError(outcome.error);
      return result;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
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
