/** Shorter values would turn ordinary words in logs into [redacted] noise; and they are too weak to be secret anyway. */
const MIN_REDACTED_LENGTH = 4;

/**
 * Replaces secret values in text the gateway stores or returns on the
 * handler's behalf (captured stdout/stderr, error messages), so a handler
 * that logs its secret does not write it into the invocation log.
 */
export function redactor(secretValues: string[]): (text: string) => string {
  const values = [...new Set(secretValues.filter((v) => v.length >= MIN_REDACTED_LENGTH))].sort((a, b) => b.length - a.length);
  if (values.length === 0) return (text) => text;
  return (text) => {
    let out = text;
    for (const value of values) out = out.split(value).join('[redacted]');
    return out;
  };
}
