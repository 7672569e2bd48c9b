/*
 * GET /v1/docs: the OpenAPI document as one server-rendered HTML page.
 * Rendered here rather than by a viewer from npm: those are single-page
 * apps (scripts, fonts, often a CDN), and this page has to work offline,
 * under a CSP that allows no script at all. Every value from the document
 * is escaped.
 */

type Json = Record<string, any>;

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'] as const;
const REF = '#/components/schemas/';

function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** Inline code spans of the descriptions (`X-Fn-Async: 1`), the rest as text. */
function prose(text: string | undefined): string {
  if (!text) return '';
  return esc(text).replace(/`([^`]+)`/g, '<code>$1</code>');
}

function refLink(ref: string): string {
  const name = ref.startsWith(REF) ? ref.slice(REF.length) : ref;
  return `<a href="#schema-${esc(name)}">${esc(name)}</a>`;
}

/** A schema in a few words: its name when it has one, else its type and the first constraints. */
function summary(schema: Json | undefined): string {
  if (!schema) return '';
  if (schema.$ref) return refLink(schema.$ref);
  for (const key of ['oneOf', 'anyOf', 'allOf'] as const) if (Array.isArray(schema[key])) return (schema[key] as Json[]).map(summary).join(key === 'allOf' ? ' &amp; ' : ' | ');
  if (schema.type === 'array') return `array of ${summary(schema.items)}`;
  const parts = [esc(schema.type ?? 'any') + (schema.format ? ` (${esc(schema.format)})` : '')];
  if (Array.isArray(schema.enum)) parts.push(`one of ${schema.enum.map((v: unknown) => `<code>${esc(JSON.stringify(v))}</code>`).join(', ')}`);
  if (schema.pattern) parts.push(`matching <code>${esc(schema.pattern)}</code>`);
  if (schema.minimum !== undefined || schema.maximum !== undefined) parts.push(`${esc(schema.minimum ?? '…')}..${esc(schema.maximum ?? '…')}`);
  if (schema.default !== undefined) parts.push(`default <code>${esc(JSON.stringify(schema.default))}</code>`);
  return parts.join(', ');
}

function content(media: Json | undefined): string {
  if (!media) return '';
  return Object.entries(media)
    .map(([type, value]) => `<div><code>${esc(type)}</code> ${summary((value as Json).schema)}</div>`)
    .join('');
}

function parameters(params: Json[] | undefined): string {
  if (!params?.length) return '';
  const rows = params
    .map((p) => `<tr><td><code>${esc(p.name)}</code>${p.required ? ' <b>required</b>' : ''}</td><td>${esc(p.in)}</td><td>${summary(p.schema)}</td><td>${prose(p.description ?? p.schema?.description)}</td></tr>`)
    .join('');
  return `<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>schema</th><th></th></tr>${rows}</table>`;
}

function responses(byStatus: Json | undefined): string {
  if (!byStatus) return '';
  const rows = Object.entries(byStatus)
    .map(([status, r]) => {
      const headers = Object.entries((r as Json).headers ?? {})
        .map(([name, h]) => `<div>header <code>${esc(name)}</code>: ${prose((h as Json).description)}</div>`)
        .join('');
      return `<tr><td><b>${esc(status)}</b></td><td>${prose((r as Json).description)}${headers}</td><td>${content((r as Json).content)}</td></tr>`;
    })
    .join('');
  return `<h4>Responses</h4><table><tr><th>status</th><th></th><th>body</th></tr>${rows}</table>`;
}

function operation(path: string, method: string, op: Json): string {
  const id = `op-${method}-${path.replace(/[^a-zA-Z0-9]+/g, '-')}`;
  const body = op.requestBody
    ? `<h4>Request body${op.requestBody.required ? ' <b>required</b>' : ''}</h4>${prose(op.requestBody.description)}${content(op.requestBody.content)}`
    : '';
  const security = op.security as Json[] | undefined;
  const open = security?.length === 0 ? ' <span class="open">no operator key</span>' : security?.some((s) => Object.keys(s).length === 0) ? ' <span class="open">operator key optional</span>' : '';
  return `<section class="op" id="${esc(id)}"><h3><span class="m ${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code>${open}</h3><p>${prose(op.summary)}</p>${op.description ? `<p>${prose(op.description)}</p>` : ''}${parameters(op.parameters)}${body}${responses(op.responses)}</section>`;
}

/** The component's JSON Schema, its references turned into links. */
function schemaBlock(name: string, schema: Json): string {
  const text = esc(JSON.stringify(schema, null, 2)).replace(/&#34;\$ref&#34;: &#34;#\/components\/schemas\/([A-Za-z0-9_.-]+)&#34;/g, (_m, ref: string) => `&#34;$ref&#34;: ${refLink(REF + ref)}`);
  return `<section id="schema-${esc(name)}"><h3>${esc(name)}</h3><pre>${text}</pre></section>`;
}

const STYLE = `body{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#1d2327}
code,pre{font:13px ui-monospace,monospace}pre{background:#f4f5f7;padding:.75rem;overflow:auto}
table{border-collapse:collapse;width:100%;margin:.25rem 0 1rem}td,th{border-top:1px solid #dde;padding:.3rem .5rem;text-align:left;vertical-align:top}
.op{border-top:2px solid #ccd;padding-top:.5rem}.m{display:inline-block;min-width:4.5rem;font-size:13px;color:#fff;padding:.1rem .4rem;border-radius:3px;background:#555}
.get{background:#2b6cb0}.post{background:#2f855a}.put{background:#b7791f}.patch{background:#6b46c1}.delete{background:#c53030}
.open{font-size:12px;color:#2f855a;border:1px solid #2f855a;border-radius:3px;padding:0 .3rem}nav li{margin:.1rem 0}`;

export function renderApiReference(document: Json): string {
  const info = document.info ?? {};
  const ops: string[] = [];
  const toc: string[] = [];
  for (const [path, item] of Object.entries((document.paths ?? {}) as Json)) {
    for (const method of METHODS) {
      const op = (item as Json)[method];
      if (!op) continue;
      ops.push(operation(path, method, op));
      toc.push(`<li><a href="#op-${esc(`${method}-${path.replace(/[^a-zA-Z0-9]+/g, '-')}`)}"><code>${esc(method.toUpperCase())} ${esc(path)}</code></a> ${prose(op.summary)}</li>`);
    }
  }
  const schemas = Object.entries((document.components?.schemas ?? {}) as Json).map(([name, schema]) => schemaBlock(name, schema as Json));
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(info.title)} API reference</title><style>${STYLE}</style></head><body>
<h1>${esc(info.title)} API reference <small>(OpenAPI ${esc(document.openapi)}, <a href="/v1/openapi.json">openapi.json</a>)</small></h1>
<p>${prose(info.description)}</p>
<nav><h2>Operations</h2><ul>${toc.join('')}</ul><h2><a href="#schemas">Schemas</a></h2></nav>
<main><h2>Operations</h2>${ops.join('\n')}<h2 id="schemas">Schemas</h2>${schemas.join('\n')}</main></body></html>`;
}
