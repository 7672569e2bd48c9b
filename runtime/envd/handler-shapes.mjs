// The three handler shapes, each reduced to one `call(request, invocation)`
// that returns what snapfn's own handlers return (a Response or a JSON
// value), and `scheduled(invocation)` for cron ticks.
//
// invocation: { id, functionName, version, memoryMb, deadline, env,
//               waitUntil(promise), schedule?: { cron } }

import { Buffer } from 'node:buffer';

/** Workers and Lambda code routes on paths of its own: /fn/<name>/x reaches it as /x. */
function unprefixed(request) {
  const url = new URL(request.url);
  const m = /^\/fn\/[^/]+(\/.*)?$/.exec(url.pathname);
  if (!m) return { request, prefix: '' };
  const prefix = url.pathname.slice(0, url.pathname.length - (m[1]?.length ?? 0));
  url.pathname = m[1] ?? '/';
  const headers = new Headers(request.headers);
  headers.set('x-forwarded-prefix', prefix);
  const init = { method: request.method, headers, body: request.body, duplex: 'half' };
  return { request: new Request(url, init), prefix };
}

export function snapfnShape(fn) {
  return {
    shape: 'snapfn',
    target: fn,
    call: (request) => fn(request),
    // A snapfn handler tells a tick from an HTTP call by its x-fn-trigger header.
    scheduled: undefined,
  };
}

// ---- Cloudflare Workers modules -------------------------------------------

function workersContext(invocation) {
  return {
    waitUntil: (promise) => invocation.waitUntil(promise),
    passThroughOnException: () => {},
    props: {},
  };
}

export function workersShape(mod) {
  return {
    shape: 'workers',
    target: mod,
    call: (request, invocation) => mod.fetch(unprefixed(request).request, { ...invocation.env }, workersContext(invocation)),
    scheduled:
      typeof mod.scheduled === 'function'
        ? async (invocation) => {
            const controller = { type: 'scheduled', cron: invocation.schedule?.cron ?? '', scheduledTime: Date.now(), noRetry: () => {} };
            await mod.scheduled(controller, { ...invocation.env }, workersContext(invocation));
            return undefined;
          }
        : undefined,
  };
}

// ---- AWS Lambda -----------------------------------------------------------

const TEXT_TYPES = /^(text\/|application\/(json|xml|javascript|x-www-form-urlencoded|graphql|ld\+json|[\w.+-]+\+(json|xml)))|^multipart\/form-data/i;

function lambdaContext(invocation, settle) {
  return {
    awsRequestId: invocation.id,
    functionName: invocation.functionName,
    functionVersion: invocation.version === undefined ? '$LATEST' : String(invocation.version),
    memoryLimitInMB: String(invocation.memoryMb),
    invokedFunctionArn: `arn:snapfn:lambda:local:000000000000:function:${invocation.functionName}`,
    logGroupName: `/snapfn/${invocation.functionName}`,
    logStreamName: invocation.id,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, invocation.deadline - Date.now()),
    // The pre-async API, still found in old handlers.
    succeed: (result) => settle(null, result),
    fail: (err) => settle(err ?? new Error('context.fail')),
    done: (err, result) => settle(err, result),
  };
}

/** Runs a handler that is async, or takes (event, context, callback), or uses context.succeed. */
function runLambda(handler, event, invocation) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err, result) => {
      if (settled) return;
      settled = true;
      if (err !== null && err !== undefined) reject(err);
      else resolve(result);
    };
    try {
      const returned = handler(event, lambdaContext(invocation, settle), settle);
      if (returned && typeof returned.then === 'function') returned.then((v) => settle(null, v), (e) => settle(e ?? new Error('rejected')));
      else if (handler.length < 3 && returned !== undefined) settle(null, returned);
    } catch (err) {
      settle(err);
    }
  });
}

/** An API Gateway HTTP API (payload format 2.0) event for `request`. */
async function httpApiEvent(request, invocation) {
  const url = new URL(request.url);
  const headers = {};
  const cookies = [];
  for (const [name, value] of request.headers) {
    if (name === 'cookie') cookies.push(...value.split(';').map((c) => c.trim()).filter(Boolean));
    else headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  const query = {};
  for (const [k, v] of url.searchParams) query[k] = query[k] === undefined ? v : `${query[k]},${v}`;
  const bytes = Buffer.from(await request.arrayBuffer());
  const textual = TEXT_TYPES.test(request.headers.get('content-type') ?? 'text/plain');
  const now = new Date();
  const rawQueryString = url.search.startsWith('?') ? url.search.slice(1) : '';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: url.pathname,
    rawQueryString,
    ...(cookies.length ? { cookies } : {}),
    headers,
    ...(rawQueryString ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: '000000000000',
      apiId: invocation.functionName,
      domainName: url.host,
      domainPrefix: url.hostname.split('.')[0],
      http: {
        method: request.method,
        path: url.pathname,
        protocol: 'HTTP/1.1',
        sourceIp: (request.headers.get('x-forwarded-for') ?? '127.0.0.1').split(',')[0].trim(),
        userAgent: request.headers.get('user-agent') ?? '',
      },
      requestId: invocation.id,
      routeKey: '$default',
      stage: '$default',
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    ...(bytes.length ? { body: textual ? bytes.toString('utf8') : bytes.toString('base64') } : {}),
    isBase64Encoded: bytes.length > 0 && !textual,
  };
}

/** The handler's result as API Gateway (payload 2.0) turns it into an HTTP response. */
function httpApiResponse(result) {
  if (result === null || typeof result !== 'object' || !('statusCode' in result)) {
    return new Response(JSON.stringify(result ?? null), { status: 200, headers: { 'content-type': 'application/json' } });
  }
  const headers = new Headers();
  for (const [k, v] of Object.entries(result.headers ?? {})) headers.set(k, String(v));
  for (const [k, values] of Object.entries(result.multiValueHeaders ?? {})) for (const v of [].concat(values)) headers.append(k, String(v));
  for (const cookie of result.cookies ?? []) headers.append('set-cookie', String(cookie));
  const raw = result.body === undefined || result.body === null ? '' : typeof result.body === 'string' ? result.body : JSON.stringify(result.body);
  const body = result.isBase64Encoded ? Buffer.from(raw, 'base64') : raw;
  const status = Number(result.statusCode);
  return new Response([204, 205, 304].includes(status) ? null : body, { status, headers });
}

/** An EventBridge scheduled event, as a Lambda on a schedule rule receives it. */
function scheduledEvent(invocation) {
  return {
    version: '0',
    id: invocation.id,
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: '000000000000',
    time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region: 'local',
    resources: [`arn:snapfn:events:local:000000000000:rule/${invocation.functionName}`],
    detail: {},
  };
}

export function lambdaShape(handler) {
  return {
    shape: 'lambda',
    target: handler,
    call: async (request, invocation) => httpApiResponse(await runLambda(handler, await httpApiEvent(unprefixed(request).request, invocation), invocation)),
    scheduled: async (invocation) => {
      const result = await runLambda(handler, scheduledEvent(invocation), invocation);
      return result === undefined ? undefined : result;
    },
  };
}
