import { context, trace, type Attributes, type Context, type Span, type SpanOptions, type Tracer, type TracerProvider } from '@opentelemetry/api';

export interface RecordedSpan {
  tracer: string;
  name: string;
  attributes: Attributes;
  ended: boolean;
}

/** A minimal TracerProvider that remembers every span: enough to assert names and attributes without an SDK. */
export class SpanRecorder implements TracerProvider {
  readonly spans: RecordedSpan[] = [];

  getTracer(tracerName: string): Tracer {
    const spans = this.spans;
    const startSpan = (name: string, options: SpanOptions = {}): Span => {
      const record: RecordedSpan = { tracer: tracerName, name, attributes: { ...options.attributes }, ended: false };
      spans.push(record);
      const span: Span = {
        spanContext: () => ({ traceId: '0'.repeat(31) + '1', spanId: '0'.repeat(15) + String(spans.length % 10), traceFlags: 1 }),
        setAttribute: (key, value) => {
          if (value !== undefined) record.attributes[key] = value;
          return span;
        },
        setAttributes: (attrs) => {
          Object.assign(record.attributes, attrs);
          return span;
        },
        addEvent: () => span,
        addLink: () => span,
        addLinks: () => span,
        setStatus: () => span,
        updateName: (n) => {
          record.name = n;
          return span;
        },
        end: () => {
          record.ended = true;
        },
        isRecording: () => true,
        recordException: () => {},
      };
      return span;
    };
    const startActiveSpan = (name: string, ...rest: unknown[]): unknown => {
      const fn = rest.pop() as (span: Span) => unknown;
      const options = (rest[0] ?? {}) as SpanOptions;
      const parent = (rest[1] as Context | undefined) ?? context.active();
      const span = startSpan(name, options);
      return context.with(trace.setSpan(parent, span), () => fn(span));
    };
    return { startSpan, startActiveSpan } as Tracer;
  }

  install(): void {
    trace.setGlobalTracerProvider(this);
  }

  uninstall(): void {
    trace.disable();
  }
}
