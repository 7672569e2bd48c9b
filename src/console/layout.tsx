import type { Child } from 'hono/jsx';
import { utc } from './format.ts';

export type Section = 'functions' | 'invocations' | 'live' | 'eval' | 'login' | 'error';

export interface LayoutProps {
  title: string;
  section: Section;
  /** Show the sign-out button (only with an API key: loopback access has no session to end). */
  signOut?: boolean;
  children?: Child;
}

const NAV: Array<[Section, string, string]> = [
  ['functions', 'Functions', '/console'],
  ['invocations', 'Invocations', '/console/invocations'],
  ['live', 'Live', '/console/live'],
  ['eval', 'Eval', '/console/eval'],
];

export function Layout({ title, section, signOut, children }: LayoutProps) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${title} · snapfn console`}</title>
        <link rel="stylesheet" href="/console/assets/console.css" />
        <script src="/console/assets/console.js" defer></script>
      </head>
      <body>
        <header class="top">
          <a class="brand" href="/console">
            snapfn
          </a>
          {section !== 'login' && (
            <nav>
              {NAV.map(([id, label, href]) => (
                <a href={href} class={id === section ? 'current' : undefined} aria-current={id === section ? 'page' : undefined}>
                  {label}
                </a>
              ))}
            </nav>
          )}
          {signOut && (
            <form method="post" action="/console/logout" class="signout">
              <button type="submit">Sign out</button>
            </form>
          )}
        </header>
        <main>{children}</main>
      </body>
    </html>
  );
}

/** A timestamp in UTC that console.js turns into the viewer's local time. */
export function Time({ iso }: { iso: string }) {
  if (Number.isNaN(new Date(iso).getTime())) return <span>{iso}</span>;
  return (
    <time datetime={new Date(iso).toISOString()} title={iso}>
      {utc(iso)}
    </time>
  );
}

/** Wide tables scroll sideways on a phone instead of squeezing every column. */
export function Scroll({ children }: { children?: Child }) {
  return <div class="scroll">{children}</div>;
}

export function Empty({ children }: { children?: Child }) {
  return <p class="empty">{children}</p>;
}

export function Status({ ok, status }: { ok: boolean; status: number }) {
  return <span class={ok && status < 500 ? 'badge ok' : 'badge fail'}>{status}</span>;
}
