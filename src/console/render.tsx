import type { Context } from 'hono';
import type { Child } from 'hono/jsx';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { Layout, type Section } from './layout.tsx';

export interface Render {
  /** A whole page in the console's layout. */
  page(c: Context, title: string, section: Section, body: Child, status?: number): Promise<Response>;
  /** Just the markup, for console.js to swap into a page that is already open. */
  fragment(c: Context, body: Child, status?: number): Promise<Response>;
}

async function markup(node: Child): Promise<string> {
  return String(await (node as { toString(): string | Promise<string> }).toString());
}

export function renderer(options: { signOut: boolean }): Render {
  return {
    async page(c, title, section, body, status = 200) {
      const html = await markup(
        <Layout title={title} section={section} signOut={options.signOut && section !== 'login'}>
          {body}
        </Layout>,
      );
      return c.html(`<!DOCTYPE html>${html}`, status as ContentfulStatusCode);
    },
    async fragment(c, body, status = 200) {
      return c.html(await markup(<>{body}</>), status as ContentfulStatusCode);
    },
  };
}
