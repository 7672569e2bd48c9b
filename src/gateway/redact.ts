// Redaction lives with the rest of secret handling; the gateway's modules import it from here.
export { redactor } from '../secrets/redact.ts';
