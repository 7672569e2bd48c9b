import type { Worker } from 'bullmq';
import { ConnectionsCutError } from './errors.ts';

type Retry = (fn: () => Promise<unknown>, opts: Record<string, unknown>) => Promise<unknown>;

/**
 * BullMQ's Worker retries a job's completion or failure after a connection
 * error without end, and without its delay once the worker is closing
 * (`Worker#retryIfFailed`, bullmq 5.81). After InvocationWorkers.close() has
 * cut the connections, each retry fails at once, so a result that was on
 * its way to a Redis that went away becomes a loop of promises that starves
 * the event loop: the close never returns and the process spins at 100 %
 * CPU. Once `isCut()` is true and the worker is closing, a retry fails
 * with a non-connection error instead, which BullMQ does not retry; the job
 * is run again elsewhere after its lock expires, as the close already
 * promises. Not before it is closing: a forced stop cuts the connections
 * before the workers close, and an instant failure then would spin the
 * fetch loop instead (BullMQ waits its runRetryDelay after a connection
 * error while it is not closing).
 */
export function endRetriesOnceCut(worker: Worker, isCut: () => boolean): void {
  const internals = worker as unknown as { retryIfFailed?: Retry };
  const original = internals.retryIfFailed;
  // Another BullMQ may not have it; test/queue-redis-down.test.ts notices a spinning close.
  if (typeof original !== 'function') return;
  internals.retryIfFailed = function (this: Worker, fn, opts) {
    return original.call(this, async () => {
      if (isCut() && worker.closing) throw new ConnectionsCutError();
      return fn();
    }, opts);
  };
}
