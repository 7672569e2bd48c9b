/** GET /fn/hello?name=Ada -> {"message":"Hello, Ada!"} */
export default async function (request: Request) {
  const url = new URL(request.url);
  const name = url.searchParams.get('name')?.trim() || 'world';
  return {
    message: `Hello, ${name}!`,
    method: request.method,
    path: url.pathname,
    time: new Date().toISOString(),
  };
}

// minWarm: one sandbox stays ready after traffic stops (the default, 0, scales to zero).
export const config = { timeoutMs: 5_000, memoryMb: 128, minWarm: 1 };
