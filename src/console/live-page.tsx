import { Scroll, Time } from './layout.tsx';
import type { LiveSnapshot } from './live-data.ts';

/** The node's sandbox places as one bar: busy, pooled, parked (kept warm, starting, tearing down), free. */
function CapacityBar({ live }: { live: LiveSnapshot }) {
  const { stats } = live;
  const pooled = Object.values(stats.pooled).reduce((a, b) => a + b, 0);
  const parts: Array<[string, number, number]> = [
    ['busy', stats.busySandboxes, 1],
    ['pooled', pooled, 0],
    ['kept warm / starting', live.parked, 2],
    ['free', Math.max(0, stats.maxSandboxes - stats.liveSandboxes), 8],
  ];
  const total = Math.max(1, stats.maxSandboxes, stats.liveSandboxes);
  let at = 0;
  return (
    <figure class="chart capacity">
      <svg viewBox="0 0 640 36" role="img" aria-label="sandbox places on this node">
        {parts.map(([name, n, slot]) => {
          const x = at;
          const w = (n / total) * 640;
          at += w;
          return n <= 0 ? null : (
            <rect class={`point s${slot}`} x={x} y="4" width={w} height="28">
              <title>{`${name}: ${n}`}</title>
            </rect>
          );
        })}
      </svg>
      <ul class="legend">
        {parts.map(([name, n, slot]) => (
          <li>
            <span class={`swatch s${slot}`}></span>
            {`${name} ${n}`}
          </li>
        ))}
      </ul>
    </figure>
  );
}

/** The part of page 4 that console.js re-fetches every couple of seconds. */
export function LivePanel({ live }: { live: LiveSnapshot }) {
  const { stats } = live;
  return (
    <div>
      <p class="muted small">
        as of <Time iso={live.at} /> · driver {live.driver}
      </p>
      <div class="numbers">
        <div>
          <b id="live-sandboxes">{stats.liveSandboxes}</b> live sandboxes of {stats.maxSandboxes}
        </div>
        <div>
          <b id="busy-sandboxes">{stats.busySandboxes}</b> busy
        </div>
        <div>
          <b>{Object.values(stats.pooled).reduce((a, b) => a + b, 0)}</b> pooled
        </div>
        <div>
          <b>{live.parked}</b> kept warm or starting
        </div>
        <div>
          <b>{live.free}</b> free to start now
        </div>
      </div>
      <CapacityBar live={live} />
      <h2>By function</h2>
      <p class="muted small">
        {live.queue === 'none' ? 'This gateway runs without a queue.' : live.queue === 'unreachable' ? 'The queue (Redis) did not answer: queue depths are not shown.' : 'Queue depth as Redis has it (with a shared Redis: every node\'s).'}
      </p>
      <Scroll>
        <table class="list" id="live-functions">
          <thead>
            <tr>
              <th>Function</th>
              <th>Pooled</th>
              <th>Queued</th>
              <th>Running from the queue</th>
            </tr>
          </thead>
          <tbody>
            {live.functions.map((f) => (
              <tr>
                <td>
                  <a href={`/console/functions/${f.name}`}>{f.name}</a>
                </td>
                <td>{f.pooled}</td>
                <td>{f.queue?.queued ?? '–'}</td>
                <td>{f.queue?.active ?? '–'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>
      <h2>Since this node started</h2>
      <dl class="facts wide">
        <dt>pool hits / misses</dt>
        <dd>{`${stats.poolHits} / ${stats.poolMisses}`}</dd>
        <dt>restores for an invocation</dt>
        <dd>{stats.restores}</dd>
        <dt>keepWarm reuses (handed on)</dt>
        <dd>{`${stats.keepWarmReuses} (${stats.handoffs})`}</dd>
        <dt>template builds</dt>
        <dd>{stats.templateBuilds}</dd>
      </dl>
    </div>
  );
}

/** Page 4: what runs on this node right now. Without a script it is a snapshot; with one, it refreshes itself. */
export function LivePage({ live }: { live: LiveSnapshot }) {
  return (
    <>
      <h1>Live</h1>
      <div id="live" data-refresh="/console/live/panel" data-refresh-ms="2000">
        <LivePanel live={live} />
      </div>
    </>
  );
}
