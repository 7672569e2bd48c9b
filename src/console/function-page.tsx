import type { VersionRecord } from '../registry/function-store.ts';
import type { InvocationLogEntry } from '../schemas/api.ts';
import type { FunctionRow } from './context.ts';
import { FunctionCharts } from './function-charts.tsx';
import { ms } from './format.ts';
import { Empty, Scroll, Status, Time } from './layout.tsx';
import type { InvocationSeries } from './time-series.ts';

export interface FunctionPageProps {
  row: FunctionRow;
  versions: VersionRecord[];
  recent: InvocationLogEntry[];
  series: InvocationSeries;
  /** Set after a rollback from this console. */
  notice?: string;
}

function Names({ names, empty }: { names: string[]; empty: string }) {
  return names.length === 0 ? <span class="muted">{empty}</span> : <span>{names.map((n) => <code class="name">{n}</code>)}</span>;
}

/** Page 2: one function, its versions (roll back from here) and its charts. */
export function FunctionPage({ row, versions, recent, series, notice }: FunctionPageProps) {
  const { fn, version } = row;
  const config = version?.config;
  const base = `/console/functions/${fn.name}`;
  return (
    <>
      <h1>
        {fn.name} <span class="muted">{fn.active === null ? 'not active' : `v${fn.active}`}</span>
      </h1>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <p>
        <code>/fn/{fn.name}</code> · <a href={`/console/invocations?function=${fn.name}`}>invocations</a>
      </p>
      <div class="cards">
        <section class="card">
          <h2>Configuration</h2>
          {config ? (
            <dl class="facts">
              <dt>handler</dt>
              <dd>{row.handler ? `${row.handler.handler} (${row.handler.shape})` : '–'}</dd>
              <dt>timeout</dt>
              <dd>{ms(config.timeoutMs)}</dd>
              <dt>memory</dt>
              <dd>{config.memoryMb} MiB</dd>
              <dt>network</dt>
              <dd>{config.network}</dd>
              <dt>keepWarm</dt>
              <dd>{config.keepWarm ? 'yes' : 'no'}</dd>
              <dt>warm pool</dt>
              <dd>{`${row.pooled} there / ${row.poolTarget ?? '?'} wanted`}</dd>
              <dt>max concurrency</dt>
              <dd>{config.maxConcurrency ?? 'unlimited'}</dd>
              <dt>max queued</dt>
              <dd>{config.maxQueued ?? 'node default'}</dd>
              <dt>requireAuth</dt>
              <dd>{config.requireAuth ? 'yes' : 'no'}</dd>
            </dl>
          ) : (
            <Empty>No active version.</Empty>
          )}
        </section>
        <section class="card">
          <h2>Environment</h2>
          <dl class="facts">
            <dt>env vars</dt>
            <dd>
              <Names names={Object.keys(version?.env ?? {}).sort()} empty="none" />
            </dd>
            <dt>secrets</dt>
            <dd>
              <Names names={version?.secretNames ?? []} empty="none" />
            </dd>
          </dl>
          <p class="muted small">Names only: values stay on the server (secrets are never shown anywhere).</p>
          <h2>Schedule</h2>
          {row.schedule ? (
            <dl class="facts">
              <dt>cron</dt>
              <dd>
                <code>{row.schedule.cron}</code> {row.schedule.tz ?? 'UTC'}
              </dd>
              <dt>next run</dt>
              <dd>
                <Time iso={row.schedule.next} />
              </dd>
            </dl>
          ) : (
            <p class="muted">none</p>
          )}
        </section>
      </div>

      <h2>Charts</h2>
      <div id="charts" data-refresh={`${base}/charts`} data-refresh-ms="10000">
        <FunctionCharts series={series} name={fn.name} />
      </div>

      <h2>Versions</h2>
      <Scroll>
        <table class="list" id="versions">
          <thead>
            <tr>
              <th>Version</th>
              <th>Deployed</th>
              <th>From</th>
              <th>Template</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {[...versions].reverse().map((v) => (
              <tr data-version={String(v.version)} class={v.version === fn.active ? 'active' : undefined}>
                <td>v{v.version}</td>
                <td>
                  <Time iso={v.createdAt} />
                </td>
                <td>{v.source}</td>
                <td>
                  <code class="small">{v.templateId}</code>
                </td>
                <td>
                  {v.version === fn.active ? (
                    <span class="tag">serving</span>
                  ) : (
                    <a class="button" href={`${base}/rollback?version=${v.version}`}>
                      Roll back to v{v.version}
                    </a>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>

      <h2>Recent invocations</h2>
      {recent.length === 0 ? <Empty>None logged yet.</Empty> : <RecentList name={fn.name} entries={recent} />}
    </>
  );
}

function RecentList({ name, entries }: { name: string; entries: InvocationLogEntry[] }) {
  return (
    <Scroll>
      <table class="list">
        <tbody>
          {entries.map((e) => (
            <tr>
              <td>
                <Time iso={e.time} />
              </td>
              <td>
                <Status ok={e.ok} status={e.status} />
              </td>
              <td>{ms(e.durationMs)}</td>
              <td>{e.error ? <code class="small">{e.error.code}</code> : ''}</td>
              <td>
                <a href={`/console/invocations/${name}/${encodeURIComponent(e.id)}`}>details</a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Scroll>
  );
}

/** The confirmation step of a rollback: a plain page and a POST form, so it needs no script. */
export function RollbackPage({ name, from, to }: { name: string; from: number | null; to: VersionRecord }) {
  return (
    <>
      <h1>Roll back {name}?</h1>
      <p>
        {name} serves {from === null ? 'no version' : `v${from}`} now. After this, new invocations run <strong>v{to.version}</strong> (deployed <Time iso={to.createdAt} />, template{' '}
        <code class="small">{to.templateId}</code>). A version whose template was collected is rebuilt first, which takes a few seconds.
      </p>
      <form method="post" action={`/console/functions/${name}/rollback`} class="actions">
        <input type="hidden" name="version" value={String(to.version)} />
        <button type="submit" class="primary" id="confirm-rollback">
          Roll back to v{to.version}
        </button>
        <a href={`/console/functions/${name}`}>Cancel</a>
      </form>
    </>
  );
}
