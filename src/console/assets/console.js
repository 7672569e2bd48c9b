// The console's only script, and an optional one: every page works without it.
// It shows times in the viewer's zone and keeps [data-refresh] parts (the live
// panel, the charts) current by fetching their server-rendered HTML again.
(() => {
  'use strict';
  const localize = (root) => {
    for (const t of root.querySelectorAll('time[datetime]')) {
      const d = new Date(t.getAttribute('datetime'));
      if (!Number.isNaN(d.getTime())) t.textContent = d.toLocaleString();
    }
  };
  localize(document);

  for (const el of document.querySelectorAll('[data-refresh]')) {
    const every = Math.max(1000, Number(el.dataset.refreshMs) || 5000);
    let busy = false;
    const refresh = async () => {
      // A hidden tab costs the gateway nothing.
      if (busy || document.hidden) return;
      busy = true;
      try {
        const res = await fetch(el.dataset.refresh, { headers: { 'x-console-fragment': '1' }, credentials: 'same-origin', cache: 'no-store' });
        if (!res.ok) throw new Error(String(res.status));
        // Same-origin HTML rendered (and escaped) by the console itself.
        el.innerHTML = await res.text();
        localize(el);
        el.dataset.updated = String(Date.now());
        el.classList.remove('stale');
      } catch {
        el.classList.add('stale');
      } finally {
        busy = false;
      }
    };
    setInterval(refresh, every);
    document.addEventListener('visibilitychange', () => document.hidden || refresh());
  }
})();
