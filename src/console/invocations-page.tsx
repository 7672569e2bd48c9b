import { ms } from './format.ts';
import { modeOf, RANGES, type InvocationFilter, type LoggedInvocation } from './invocations-query.ts';
import { Empty, Scroll, Status, Time } from './layout.tsx';

export interface InvocationsPageProps {
  filter: InvocationFilter;
  functions: string[];
  items: LoggedInvocation[];
  matched: number;
}

function Select({ name, value, options }: { name: string; value: string; options: Array<[string, string]> }) {
  return (
    <select name={name} id={`filter-${name}`}>
      {options.map(([v, label]) => (
        <option value={v} selected={v === value}>
          {label}
        </option>
      ))}
    </select>
  );
}

/** A one-line summary of where the time went, for the list (the detail page draws it). */
function phases(entry: LoggedInvocation['entry']): string {
  const t = entry.timings;
  if (!t) return entry.queue ? `queue ${ms(entry.queue.waitMs)}` : '–';
  const parts = [entry.queue ? `queue ${ms(entry.queue.waitMs)}` : undefined, t.acquireMs >= 1 ? `wait ${ms(t.acquireMs)}` : undefined, t.source === 'restore' ? `restore ${ms(t.restoreMs)}` : t.source, `handler ${ms(t.handlerMs)}`];
  return parts.filter(Boolean).join(' · ');
}

/** Page 3: the invocation log of every function, filtered; a plain GET form, so it works without a script. */
export function InvocationsPage({ filter, functions, items, matched }: InvocationsPageProps) {
  return (
    <>
      <h1>Invocations</h1>
      <form method="get" action="/console/invocations" class="filters">
        <label>
          Function
          <Select name="function" value={filter.function} options={[['', 'all'], ...functions.map((f): [string, string] => [f, f])]} />
        </label>
        <label>
          Outcome
          <Select name="outcome" value={filter.outcome} options={[['', 'any'], ['ok', 'ok'], ['error', 'failed']]} />
        </label>
        <label>
          Mode
          <Select name="mode" value={filter.mode} options={[['', 'any'], ['direct', 'direct'], ['sync', 'queued (sync)'], ['async', 'async'], ['schedule', 'schedule'], ['topic', 'topic']]} />
        </label>
        <label>
          Range
          <Select name="range" value={filter.range} options={Object.keys(RANGES).map((r): [string, string] => [r, r === 'all' ? 'all kept' : `last ${r}`])} />
        </label>
        <label>
          From (UTC)
          <input type="datetime-local" name="from" value={filter.from} />
        </label>
        <label>
          To (UTC)
          <input type="datetime-local" name="to" value={filter.to} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <p class="muted">
        {matched === 0 ? 'No invocation matches.' : `${matched} match${matched === 1 ? '' : 'es'}${matched > items.length ? `, the newest ${items.length} shown` : ''}.`}
      </p>
      {items.length === 0 ? (
        <Empty>Try a wider range or another function.</Empty>
      ) : (
        <Scroll>
          <table class="list" id="invocations">
            <thead>
              <tr>
                <th>Time</th>
                <th>Function</th>
                <th>Status</th>
                <th>Mode</th>
                <th>Duration</th>
                <th>Phases</th>
                <th>Error</th>
                <th>Id</th>
              </tr>
            </thead>
            <tbody>
              {items.map(({ fn, entry }) => (
                <tr data-id={entry.id} data-ok={String(entry.ok)}>
                  <td>
                    <Time iso={entry.time} />
                  </td>
                  <td>
                    <a href={`/console/functions/${fn}`}>{fn}</a> <span class="muted">v{entry.version}</span>
                  </td>
                  <td>
                    <Status ok={entry.ok} status={entry.status} />
                  </td>
                  <td>{modeOf(entry)}{entry.queue && entry.queue.maxAttempts > 1 ? ` ${entry.queue.attempt}/${entry.queue.maxAttempts}` : ''}</td>
                  <td>{ms(entry.durationMs)}</td>
                  <td class="small">{phases(entry)}</td>
                  <td>{entry.error ? <code class="small">{entry.error.code}</code> : ''}</td>
                  <td>
                    <a class="mono small" href={`/console/invocations/${fn}/${encodeURIComponent(entry.id)}`}>
                      {entry.id.length > 13 ? `${entry.id.slice(0, 8)}…` : entry.id}
                    </a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </Scroll>
      )}
    </>
  );
}
