import type { FunctionRow } from './context.ts';
import { ago, ms, percent } from './format.ts';
import { Empty, Scroll, Status } from './layout.tsx';

/** Page 1: every function at a glance. */
export function FunctionsPage({ rows, driver }: { rows: FunctionRow[]; driver: string }) {
  return (
    <>
      <h1>Functions</h1>
      <p class="muted">
        {rows.length} function{rows.length === 1 ? '' : 's'} · error rate and latency over the last hour (since this gateway started, at most)
      </p>
      {rows.length === 0 ? (
        <Empty>
          Nothing deployed yet: <code>fn deploy ./my-function</code>
        </Empty>
      ) : (
        <Scroll>
          <table class="list" id="functions">
            <thead>
              <tr>
                <th>Function</th>
                <th>Version</th>
                <th>Handler</th>
                <th>Driver</th>
                <th>keepWarm</th>
                <th>Concurrency</th>
                <th>Schedule</th>
                <th title="pre-restored sandboxes: there now / wanted">Pool</th>
                <th>Last invocation</th>
                <th>Errors (1 h)</th>
                <th>p50 / p99 (1 h)</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr data-function={r.fn.name}>
                  <td>
                    <a href={`/console/functions/${r.fn.name}`}>{r.fn.name}</a>
                  </td>
                  <td>{r.fn.active === null ? '–' : `v${r.fn.active}`}</td>
                  <td>
                    {r.handler ? (
                      <>
                        <span class="tag">{r.handler.shape}</span> <code class="small">{r.handler.handler}</code>
                      </>
                    ) : (
                      '–'
                    )}
                  </td>
                  <td>{driver}</td>
                  <td>{r.version?.config.keepWarm ? 'yes' : 'no'}</td>
                  <td>{r.version?.config.maxConcurrency ?? 'unlimited'}</td>
                  <td>{r.schedule ? <code class="small">{r.schedule.cron}</code> : '–'}</td>
                  <td>{`${r.pooled} / ${r.poolTarget ?? '?'}`}</td>
                  <td>
                    {r.last ? (
                      <a href={`/console/invocations/${r.fn.name}/${encodeURIComponent(r.last.id)}`}>
                        <Status ok={r.last.ok} status={r.last.status} /> <span title={r.last.time}>{ago(r.last.time)}</span>
                      </a>
                    ) : (
                      'never'
                    )}
                  </td>
                  <td class={r.hour.errors > 0 ? 'bad' : undefined}>{r.hour.invocations === 0 ? '–' : `${percent(r.hour.errors, r.hour.invocations)} of ${r.hour.invocations}`}</td>
                  <td>{r.hour.latency ? `${ms(r.hour.latency.p50)} / ${ms(r.hour.latency.p99)}` : '–'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Scroll>
      )}
    </>
  );
}
