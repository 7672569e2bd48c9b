import crypto from 'node:crypto';

/** The header a callback's signature travels in. */
export const SIGNATURE_HEADER = 'x-snapfn-signature';

/** How old a signed callback may be before a receiver should refuse it as a replay. */
export const SIGNATURE_TOLERANCE_S = 300;

/**
 * `t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">`, Stripe's
 * scheme: the timestamp inside the signed text lets a receiver refuse an
 * old request replayed at it, which a signature over the body alone cannot.
 */
export function signCallback(secret: string, body: string | Buffer, nowSeconds = Math.floor(Date.now() / 1000)): string {
  const mac = crypto.createHmac('sha256', secret).update(`${nowSeconds}.`).update(body).digest('hex');
  return `t=${nowSeconds},v1=${mac}`;
}

/** What a receiver does (the docs' and the tests' receivers use it): constant-time compare, bounded age. */
export function verifyCallback(secret: string, body: string | Buffer, header: string | null | undefined, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.trim().split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > SIGNATURE_TOLERANCE_S || !/^[0-9a-f]{64}$/.test(parts.v1 ?? '')) return false;
  const expected = signCallback(secret, body, t).split('v1=')[1]!;
  return crypto.timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(parts.v1!, 'hex'));
}
