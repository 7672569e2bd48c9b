import { context, trace } from '@opentelemetry/api';

export interface Tracing {
  /** Flushes pending spans and stops exporting. */
  close(): Promise<void>;
}

const NO_TRACING: Tracing = { close: async () => {} };

/**
 * Exports every span (gateway, queue wait, restore, envd connect, handler,
 * teardown) over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or the
 * traces-specific variable) is set. Otherwise nothing is registered and the
 * API's no-op tracer makes every span free, which is why the SDK is only
 * imported here, on demand.
 */
export async function startTracing(env: NodeJS.ProcessEnv = process.env, serviceName = 'snapfn'): Promise<Tracing> {
  // Per the OTLP spec the generic endpoint gets /v1/traces appended, the traces-specific one is used as is.
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces` : undefined);
  if (!url) return NO_TRACING;
  const [{ TracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { AsyncLocalStorageContextManager }, { resourceFromAttributes }] = await Promise.all([
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/resources'),
  ]);
  // Headers and timeouts still come from OTEL_EXPORTER_OTLP_* through the exporter itself.
  const exporter = new OTLPTraceExporter({ url });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME || serviceName }),
    spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: 500 })],
  });
  // Parent/child links between the phases need a context manager that follows async calls.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(provider);
  return {
    async close() {
      await provider.forceFlush().catch(() => {});
      await provider.shutdown().catch(() => {});
      trace.disable();
      context.disable();
    },
  };
}
