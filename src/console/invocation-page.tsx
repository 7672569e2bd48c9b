import type { InvocationLogEntry } from '../schemas/api.ts';
import { PhaseBar, type Phase } from './charts.tsx';
import { bytes, ms } from './format.ts';
import { modeOf } from './invocations-query.ts';
import { Status, Time } from './layout.tsx';

/**
 * The trace's phases, from what the log kept: the wait in the queue
 * (queued runs), the wait for a sandbox place on the node, the restore,
 * the handler, and what is left of the total: the gateway, envd's
 * connection and the teardown.
 */
export function phasesOf(entry: InvocationLogEntry): Phase[] {
  const t = entry.timings;
  const phases: Phase[] = [];
  if (entry.queue) phases.push({ name: 'queue wait', ms: entry.queue.waitMs, slot: 5 });
  if (!t) return [...phases, { name: 'total', ms: entry.durationMs, slot: 6 }];
  phases.push({ name: 'sandbox wait', ms: t.acquireMs, slot: 3 });
  // Zero on a pool hit or keepWarm reuse, and shown as such: that is the point of those paths.
  phases.push({ name: t.source === 'restore' ? 'restore' : `restore (none: ${t.source === 'pool' ? 'pool hit' : 'keepWarm reuse'})`, ms: t.restoreMs, slot: 4 });
  phases.push({ name: 'handler', ms: t.handlerMs, slot: 0 });
  const rest = entry.durationMs - t.acquireMs - t.restoreMs - t.handlerMs;
  phases.push({ name: 'gateway, envd and teardown', ms: Math.max(0, Math.round(rest * 10) / 10), slot: 6 });
  return phases;
}

function Attempt({ entry }: { entry: InvocationLogEntry }) {
  const phases = phasesOf(entry);
  return (
    <section class="card attempt" data-ok={String(entry.ok)}>
      <h2>
        <Status ok={entry.ok} status={entry.status} /> {entry.method} <code>{entry.path}</code>
        {entry.queue && <span class="muted"> · attempt {entry.queue.attempt} of {entry.queue.maxAttempts} ({entry.queue.state})</span>}
      </h2>
      <dl class="facts">
        <dt>time</dt>
        <dd>
          <Time iso={entry.time} />
        </dd>
        <dt>version</dt>
        <dd>v{entry.version}</dd>
        <dt>mode</dt>
        <dd>{modeOf(entry)}</dd>
        <dt>duration</dt>
        <dd>{ms(entry.durationMs)}{entry.queue ? ` on the node, after ${ms(entry.queue.waitMs)} in the queue` : ''}</dd>
        <dt>sandbox</dt>
        <dd>{entry.timings?.source ?? 'none'}</dd>
        <dt>request</dt>
        <dd>{bytes(entry.requestBytes)}</dd>
        <dt>response</dt>
        <dd>
          {bytes(entry.responseBytes)}
          {entry.ttfbMs !== undefined ? ` (streamed, first byte after ${ms(entry.ttfbMs)})` : ''}
        </dd>
      </dl>
      <h3>Phases</h3>
      <PhaseBar phases={phases} />
      <table class="list phases-table">
        <tbody>
          {phases.map((p) => (
            <tr>
              <td>{p.name}</td>
              <td>{ms(p.ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {entry.error && (
        <>
          <h3>Error</h3>
          <div class="error" id="error">
            <p>
              <code>{entry.error.code}</code>: {entry.error.message}
            </p>
            {entry.error.stack && <pre class="stack">{entry.error.stack}</pre>}
          </div>
        </>
      )}
      <h3>Logs{entry.logsTruncated ? ' (truncated)' : ''}</h3>
      {entry.logs.length === 0 ? (
        <p class="muted">Nothing printed.</p>
      ) : (
        <pre class="logs" id="logs">
          {entry.logs.map((line) => (
            <span class={line.stream}>{`${`+${Math.round(line.t)}ms`.padStart(8)} ${line.text.endsWith('\n') ? line.text : `${line.text}\n`}`}</span>
          ))}
        </pre>
      )}
    </section>
  );
}

/** Page 3, one invocation: every logged attempt with its phases, sizes, logs and error. */
export function InvocationPage({ fn, id, attempts }: { fn: string; id: string; attempts: InvocationLogEntry[] }) {
  return (
    <>
      <h1>
        Invocation <code class="mono">{id}</code>
      </h1>
      <p>
        of <a href={`/console/functions/${fn}`}>{fn}</a> · <a href={`/console/invocations?function=${fn}`}>all of {fn}'s invocations</a>
      </p>
      {attempts.map((entry) => (
        <Attempt entry={entry} />
      ))}
    </>
  );
}
