import { redactor } from '../secrets/redact.ts';
import type { FunctionStore } from '../registry/function-store.ts';
import type { InvocationLogEntry } from '../schemas/api.ts';

/**
 * One invocation as the log keeps it (one entry per attempt for queued
 * ones): id, function version, trigger, attempts (`queue`), phases
 * (`timings`), outcome (`status`, `ok`, `error`), sizes and captured logs.
 * The schema is InvocationLogEntry (src/schemas/api.ts), shared with the API
 * and the console.
 */
export type InvocationRecord = InvocationLogEntry;

export interface InvocationLogWriter {
  store: Pick<FunctionStore, 'logs' | 'secretValuesOf'>;
  log?: ((message: string) => void) | undefined;
}

export type Redact = (text: string) => string;

/**
 * The one place an invocation reaches the invocation log. Secret values of
 * the version that ran are taken out of everything the handler wrote
 * (captured output, error message and stack) here, whoever calls; `redact`
 * is the caller's own when it already has the version's secrets. Never
 * throws: a full disk must not turn an answered invocation into an error.
 */
export async function writeInvocation(writer: InvocationLogWriter, name: string, record: InvocationRecord, redact?: Redact): Promise<void> {
  try {
    const r = redact ?? redactor(await writer.store.secretValuesOf(name, record.version).catch(() => []));
    await writer.store.logs.append(name, redacted(record, r));
  } catch (err) {
    (writer.log ?? console.error)(`snapfn gateway: could not append to the log of ${name}: ${(err as Error).message}`);
  }
}

function redacted(record: InvocationRecord, redact: Redact): InvocationRecord {
  const { error } = record;
  return {
    ...record,
    ...(error ? { error: { code: error.code, message: redact(error.message), ...(error.stack ? { stack: redact(error.stack) } : {}) } } : {}),
    logs: record.logs.map((line) => ({ ...line, text: redact(line.text) })),
  };
}

/** Milliseconds to one decimal, as the log keeps them. */
export function roundMs(ms: number): number {
  return Math.round(ms * 10) / 10;
}
