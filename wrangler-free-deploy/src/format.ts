import type { HashedDirectory } from '../../src/deploy/pack-directory.ts';
import type { FunctionView, InvocationLogEntry, InvocationView } from '../../src/schemas/api.ts';
import type { UploadProgress } from './upload-blobs.ts';

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Plain columns, padded to the widest cell; no colors, so it pipes cleanly. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function deployingLine(name: string, dir: string, hashed: Pick<HashedDirectory, 'manifest' | 'bytes' | 'hoisted'>): string {
  const shown = hashed.hoisted.slice(0, 3).join(', ');
  const more = hashed.hoisted.length > 3 ? ` and ${hashed.hoisted.length - 3} more` : '';
  const hoisted = hashed.hoisted.length > 0 ? `, with ${shown}${more} from a parent node_modules` : '';
  return `deploying ${name} from ${dir} (${hashed.manifest.length} files, ${formatBytes(hashed.bytes)}${hoisted})`;
}

export function uploadingLine(p: UploadProgress, distinct: number): string {
  if (p.blobs === 0) return `  the gateway has all ${distinct} blobs already: nothing to upload`;
  return `  uploading ${p.blobs} of ${distinct} blobs (${formatBytes(p.bytes)})`;
}

export function uploadProgressLine(p: UploadProgress): string {
  return `  uploaded ${p.uploadedBlobs}/${p.blobs} blobs, ${formatBytes(p.uploadedBytes)} of ${formatBytes(p.bytes)}`;
}

export function uploadedLine(p: UploadProgress): string {
  return `  uploaded ${p.uploadedBlobs} blobs (${formatBytes(p.uploadedBytes)})`;
}

const STEP_LABELS: Record<string, (detail: Record<string, unknown>) => string> = {
  prepared: (d) => `prepared ${String(d.files ?? '?')} files (${formatBytes(Number(d.bytes ?? 0))}), entry ${String(d.entry ?? '?')}`,
  bundled: (d) => `bundled handler (${formatBytes(Number(d.bytes ?? 0))})`,
  rootfs: () => 'preparing the base root filesystem',
  boot: () => 'booting a sandbox with the handler',
  warm: () => 'warming up',
  checkpoint: () => 'checkpointing the template snapshot',
  done: (d) => `template ${String(d.templateId ?? '').slice(0, 12)} ready${d.imageBytes ? ` (${formatBytes(Number(d.imageBytes))})` : ''}`,
  rebuild: (d) => `the handler asks for network=${String(d.network)}: rebuilding the template`,
  activating: () => 'activating',
  activated: (d) => `activated v${String(d.version)}`,
};

export function progressLine(step: string, detail: Record<string, unknown> = {}): string {
  return `  ${STEP_LABELS[step]?.(detail) ?? step}`;
}

export function functionSummary(fn: FunctionView): string {
  const v = fn.active;
  if (!v) return `${fn.name}: no active version`;
  const secrets = v.secretNames.length > 0 ? `, secrets: ${v.secretNames.join(' ')}` : '';
  const env = Object.keys(v.env).length > 0 ? `, env: ${Object.keys(v.env).join(' ')}` : '';
  const schedule = fn.schedule ? `\n  schedule ${fn.schedule.cron}${fn.schedule.tz ? ` (${fn.schedule.tz})` : ' (UTC)'}, next ${fn.schedule.next}` : '';
  return `${fn.name} v${v.version} -> ${fn.url}\n  timeout ${v.config.timeoutMs} ms, memory ${v.config.memoryMb} MiB, network ${v.config.network}${v.config.keepWarm ? ', keep-warm' : ''}${env}${secrets}${schedule}`;
}

/** `fn ls`'s POOL: pre-restored sandboxes now / the target, on the node that answered. */
export function poolCell(fn: FunctionView): string {
  return fn.pool ? `${fn.pool.size}/${fn.pool.target}` : '-';
}

/** `async 2/3 retrying`, `schedule 1/1 dead (dead letter)`...: how a queued attempt went. */
function queueLabel(q: NonNullable<InvocationLogEntry['queue']>): string {
  return `${q.mode} ${q.attempt}/${q.maxAttempts} ${q.state === 'dead' ? 'dead (dead letter)' : q.state}, waited ${q.waitMs.toFixed(0)}ms`;
}

export function logEntryLines(entry: InvocationLogEntry): string[] {
  const queued = entry.queue ? `  [${queueLabel(entry.queue)}]` : '';
  const head = `${entry.time}  ${entry.status}  ${entry.durationMs.toFixed(1)}ms  v${entry.version}  ${entry.method} ${entry.path}  ${entry.id}${queued}`;
  const lines = [entry.error ? `${head}  ${entry.error.code}: ${entry.error.message}` : head];
  for (const log of entry.logs) {
    const marker = log.stream === 'stderr' ? '!' : '|';
    for (const text of log.text.replace(/\n$/, '').split('\n')) lines.push(`    ${marker} ${text}`);
  }
  if (entry.logsTruncated) lines.push('    ... (output truncated)');
  return lines;
}

/** `fn invocation`: the status, then the handler's response (or the error) and its output. */
export function invocationLines(view: InvocationView): string[] {
  const lines = [
    `${view.id}  ${view.function}${view.version ? ` v${view.version}` : ''}  ${view.mode}  ${view.status}  attempt ${view.attempts}/${view.maxAttempts}`,
    `  enqueued ${view.enqueuedAt}${view.startedAt ? `, started ${view.startedAt}` : ''}${view.finishedAt ? `, finished ${view.finishedAt}` : ''}`,
  ];
  if (view.error) lines.push(`  error ${view.error.code}: ${view.error.message}`);
  for (const log of view.logs ?? []) {
    const marker = log.stream === 'stderr' ? '!' : '|';
    for (const text of log.text.replace(/\n$/, '').split('\n')) lines.push(`    ${marker} ${text}`);
  }
  if (view.result) {
    const r = view.result;
    lines.push(`  HTTP ${r.status}${r.headers['content-type'] ? ` ${r.headers['content-type']}` : ''}`);
    if (r.bodyEncoding === 'json') lines.push(JSON.stringify(r.body, null, 2));
    else if (r.bodyEncoding === 'text') lines.push(String(r.body).replace(/\n$/, ''));
    else if (r.bodyEncoding === 'base64') lines.push(`(binary body, ${Buffer.from(String(r.body), 'base64').length} bytes; --json shows it as base64)`);
  }
  return lines;
}
