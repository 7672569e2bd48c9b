import type { Deployment } from '../orchestrator/types.ts';
import type { InvocationJobResult } from '../queue/job-data.ts';
import { WireResponse, type InvocationOutcome } from '../schemas/invocation.ts';
import { SealedDataError, type SecretsKey } from './envelope.ts';
import { redactor } from './redact.ts';

/*
 * What a queued invocation leaves in Redis (the job's return value, its
 * failed reason and stack, the completed event, the result stream of worker
 * nodes, and the append-only file that keeps all of them on disk) is shaped
 * here, on the node that ran it, before anything else sees the outcome:
 *
 * - logs and error text (message, name, stack) have the deployment's
 *   secret values redacted, as the API has always shown them;
 * - the response (status aside) is sealed under the secrets key and opened
 *   only when a caller collects it: its bytes are the handler's answer to
 *   that caller, so redacting them would change what the caller gets.
 */

/** The values of the deployment's secrets (env also carries the plain env vars). */
export function secretValuesOf(deployment: Pick<Deployment, 'env' | 'secretNames'>): string[] {
  return (deployment.secretNames ?? []).map((name) => deployment.env[name]).filter((v): v is string => v !== undefined);
}

export function redactOutcome<T extends InvocationOutcome>(deployment: Pick<Deployment, 'env' | 'secretNames'>, outcome: T): T {
  const values = secretValuesOf(deployment);
  if (values.length === 0) return outcome;
  const redact = redactor(values);
  const logs = outcome.logs.map((line) => ({ ...line, text: redact(line.text) }));
  if (outcome.ok) return { ...outcome, logs };
  const { error } = outcome;
  return {
    ...outcome,
    logs,
    error: { ...error, message: redact(error.message), ...(error.name !== undefined ? { name: redact(error.name) } : {}), ...(error.stack !== undefined ? { stack: redact(error.stack) } : {}) },
  };
}

/** The result as Redis keeps it: the response sealed for this invocation only. */
export function sealResult(key: SecretsKey, invocationId: string, result: InvocationJobResult): InvocationJobResult {
  const { outcome } = result;
  if (!outcome.ok || result.sealedResponse !== undefined) return result;
  const sealedResponse = key.seal(JSON.stringify(outcome.response), resultContext(invocationId));
  return { ...result, outcome: { ...outcome, response: { status: outcome.response.status, headers: [], bodyBase64: '' } }, sealedResponse };
}

/**
 * The result as its caller gets it. A result sealed under another key, or
 * tampered with, throws SealedDataError: an error, never another body.
 */
export function openResult(key: SecretsKey | undefined, invocationId: string, result: InvocationJobResult): InvocationJobResult {
  const { sealedResponse, ...rest } = result;
  if (sealedResponse === undefined || !rest.outcome.ok) return result;
  if (!key) throw new SealedDataError(`the result of ${invocationId} is sealed and this node has no secrets key`);
  const parsed = WireResponse.safeParse(JSON.parse(key.open(sealedResponse, resultContext(invocationId)).toString('utf8')));
  if (!parsed.success) throw new SealedDataError(`the sealed result of ${invocationId} is not a response`);
  return { ...rest, outcome: { ...rest.outcome, response: parsed.data } };
}

function resultContext(invocationId: string): string {
  return `snapfn result ${invocationId}`;
}
