import type { HttpBindings } from '@hono/node-server';
import type { InvocationEngine } from '../orchestrator/types.ts';
import type { FunctionStore } from '../registry/function-store.ts';
import type { SnapfnConfig } from '../config.ts';
import type { SnapfnMetrics } from '../telemetry/snapfn-metrics.ts';

/** Hono's environment for the gateway: node bindings (absent under app.request() in tests) and per-request variables. */
export type GatewayEnv = {
  Bindings: Partial<HttpBindings>;
  Variables: { invocationId: string };
};

export interface GatewayDeps {
  engine: InvocationEngine;
  store: FunctionStore;
  config: Pick<SnapfnConfig, 'apiKey' | 'maxBodyBytes' | 'maxBundleBytes'>;
  /** Served at /metrics and fed by every invocation, when present. */
  metrics?: SnapfnMetrics;
  /** Where unexpected errors are reported (defaults to console.error). */
  log?: (message: string) => void;
}
