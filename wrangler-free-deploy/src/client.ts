import { z } from 'zod';
import { ErrorBody } from '../../src/schemas/api.ts';
import { zodMessage } from '../../src/schemas/zod-message.ts';
import { CliError } from './cli-error.ts';

export const ClientEnv = z.object({
  FN_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as http://127.0.0.1:8080' }).default('http://127.0.0.1:8080'),
  FN_API_KEY: z.string().optional(),
});

export interface RequestOptions {
  json?: unknown;
  /** A stream is sent as it is read (give `content-length` in `headers` when the size is known). */
  body?: Uint8Array | string | ReadableStream<Uint8Array>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** HTTP errors of the gateway, with its error code when the body has one. */
export class HttpError extends CliError {
  readonly status: number;
  readonly code: string | undefined;

  constructor(status: number, code: string | undefined, message: string) {
    super(code ? `${code}: ${message}` : `HTTP ${status}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

function connectionProblem(err: unknown, baseUrl: string): CliError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  switch (cause?.code) {
    case 'ECONNREFUSED':
      return new CliError(`the gateway is not running at ${baseUrl} (connection refused; start it with npm start or set FN_URL)`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new CliError(`cannot resolve the gateway host in ${baseUrl} (check FN_URL)`);
    case 'ECONNRESET':
      return new CliError(`the gateway at ${baseUrl} closed the connection`);
    default:
      return new CliError(`cannot reach the gateway at ${baseUrl}: ${cause?.message ?? (err as Error).message}`);
  }
}

/** The gateway's error, as one line. */
export async function httpErrorOf(res: Response): Promise<HttpError> {
  const text = await res.text().catch(() => '');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const parsed = ErrorBody.safeParse(body);
  if (parsed.success) return new HttpError(res.status, parsed.data.error.code, parsed.data.error.message);
  return new HttpError(res.status, undefined, text.trim().split('\n')[0]?.slice(0, 200) || res.statusText);
}

export class GatewayClient {
  readonly baseUrl: string;
  readonly #apiKey: string | undefined;

  constructor(baseUrl: string, apiKey?: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.#apiKey = apiKey;
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): GatewayClient {
    const parsed = ClientEnv.safeParse({ FN_URL: env.FN_URL || undefined, FN_API_KEY: env.FN_API_KEY || undefined });
    if (!parsed.success) throw new CliError(zodMessage(parsed.error));
    return new GatewayClient(parsed.data.FN_URL, parsed.data.FN_API_KEY);
  }

  /** Any request; resolves with the response whatever its status (connection failures become CliErrors). */
  async fetch(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`;
    let body: RequestOptions['body'] = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] = 'application/json';
    }
    try {
      // Buffers are valid fetch bodies at runtime; lib.dom's BodyInit typing lags behind ArrayBufferLike.
      const streamed = body instanceof ReadableStream ? { duplex: 'half' } : {};
      return await fetch(`${this.baseUrl}${path}`, { method, headers, ...(body !== undefined ? { body: body as BodyInit } : {}), ...streamed, ...(options.signal ? { signal: options.signal } : {}) } as RequestInit);
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      throw connectionProblem(err, this.baseUrl);
    }
  }

  /** A request that must succeed; the body is parsed and validated with `schema`. */
  async call<S extends z.ZodType>(schema: S, method: string, path: string, options: RequestOptions = {}): Promise<z.infer<S>> {
    const res = await this.ok(method, path, options);
    const parsed = schema.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success) throw new CliError(`unexpected answer from ${method} ${path}: ${zodMessage(parsed.error)}`);
    return parsed.data;
  }

  /** A request that must answer 2xx. */
  async ok(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const res = await this.fetch(method, path, options);
    if (!res.ok) throw await httpErrorOf(res);
    return res;
  }
}
