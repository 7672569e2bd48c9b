import type { HttpBindings } from '@hono/node-server';
import type { InvocationEngine } from '../orchestrator/types.ts';
import type { FunctionQueues } from '../queue/function-queues.ts';
import type { FunctionStore } from '../registry/function-store.ts';
import type { SnapfnConfig } from '../config.ts';
import type { SnapfnMetrics } from '../telemetry/snapfn-metrics.ts';
import type { EvalService } from '../eval/eval-service.ts';
import type { TemplateCollector } from '../gc/template-collector.ts';

/** Hono's environment for the gateway: node bindings (absent under app.request() in tests) and per-request variables. */
export type GatewayEnv = {
  Bindings: Partial<HttpBindings>;
  Variables: { invocationId: string };
};

/** Default of SNAPFN_MAX_QUEUE_WAIT_MS. */
export const DEFAULT_MAX_QUEUE_WAIT_MS = 30_000;

export interface GatewayDeps {
  engine: InvocationEngine;
  store: FunctionStore;
  /** poolSize: the default warm pool target, shown by the console. */
  config: Pick<SnapfnConfig, 'apiKey' | 'maxBodyBytes' | 'maxDeployBytes'> & Partial<Pick<SnapfnConfig, 'maxQueueWaitMs' | 'poolSize' | 'publicUrl'>>;
  /**
   * The queue layer. `npm start` always has one; without it (unit tests of
   * the direct path) every invocation is direct and async / Idempotency-Key
   * requests are refused.
   */
  queue?: FunctionQueues | undefined;
  /** Mounted at POST /v1/eval when present. */
  evalService?: EvalService;
  /** Why eval could not start on this node: POST /v1/eval answers 503 eval_unavailable with it. */
  evalUnavailable?: string;
  /** Template garbage collection: POST /v1/admin/gc, and a background run after each deploy and delete. */
  gc?: TemplateCollector;
  /** Served at /metrics and fed by every invocation, when present. */
  metrics?: SnapfnMetrics;
  /**
   * The address the gateway listens on, once it does (set by startGateway):
   * API views build URLs from config.publicUrl, else from this, never from
   * the request's Host header.
   */
  listenUrl?: () => string;
  /** Where unexpected errors are reported (defaults to console.error). */
  log?: (message: string) => void;
}
