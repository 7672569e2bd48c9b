import { marked } from 'marked';

const page = (body: string) => `<!doctype html>
<html><head><meta charset="utf-8"><title>snapfn markdown</title></head>
<body>
${body}
</body></html>
`;

const SAMPLE = '# Hello from snapfn\n\nPOST some *markdown* to this function and get **HTML** back.\n';

/** POST markdown (text/markdown or text/plain), or GET ?md=..., and get an HTML page back. */
export default async function (request: Request) {
  const url = new URL(request.url);
  const source = request.method === 'POST' ? await request.text() : (url.searchParams.get('md') ?? SAMPLE);
  if (source.length > 1024 * 1024) return new Response('markdown too large (max 1 MiB)\n', { status: 413 });
  // marked does not sanitize: fine for trusted input, put a sanitizer in front for user content.
  const html = await marked.parse(source);
  return new Response(page(html), { headers: { 'content-type': 'text/html; charset=utf-8' } });
}

// One sandbox stays ready after traffic stops (the default, 0, scales to zero).
export const config = { minWarm: 1 };
