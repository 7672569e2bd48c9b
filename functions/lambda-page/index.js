/**
 * An AWS Lambda handler in CommonJS, as API Gateway (HTTP API) would call it:
 *   GET /fn/lambda-page?name=Ada  -> an HTML page rendered from templates/page.html
 */
const fs = require('node:fs');
const path = require('node:path');
const Mustache = require('mustache');

// Read when the module loads, which is before the snapshot: no invocation pays for it.
const page = fs.readFileSync(path.join(__dirname, 'templates', 'page.html'), 'utf8');

exports.handler = async (event, context) => {
  const name = event.queryStringParameters?.name?.trim() || 'visitor';
  const headers = Object.keys(event.headers)
    .sort()
    .map((header) => ({ header, value: event.headers[header] }));
  const body = Mustache.render(page, {
    name,
    method: event.requestContext.http.method,
    path: event.rawPath,
    headers,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    memoryMb: context.memoryLimitInMB,
    remainingMs: context.getRemainingTimeInMillis(),
  });
  return { statusCode: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body };
};

// One sandbox stays ready after traffic stops (the default, 0, scales to zero).
exports.config = { minWarm: 1 };
