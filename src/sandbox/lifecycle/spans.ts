import { trace } from '@opentelemetry/api';

const tracer = trace.getTracer('snapfn');

/**
 * The phases every driver reports alike, as children of the invocation's
 * span: `restore` (a resume, whole), `envd connect` (until envd's hello)
 * and, in EnvdSandbox, `handler`. A driver may add its own inside them
 * (`qemu start`).
 */
export type SandboxPhase = 'restore' | 'envd connect' | 'qemu start' | 'firecracker start';

export function traced<T>(phase: SandboxPhase, run: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(phase, (span) => run().finally(() => span.end()));
}
