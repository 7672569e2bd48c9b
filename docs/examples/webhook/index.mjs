// A webhook receiver is an ordinary HTTP function: point GitHub or Stripe at
// https://<gateway>/fn/webhook and verify their signature here, over the raw
// body, with the shared secret deployed as a snapfn secret:
//   fn deploy docs/examples/webhook --secret GITHUB_WEBHOOK_SECRET=... --secret STRIPE_WEBHOOK_SECRET=...
// Anything unsigned or signed with another secret is answered 401 and never acted on.
import crypto from 'node:crypto';

const STRIPE_TOLERANCE_S = 300;

function safeEqualHex(a, b) {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && crypto.timingSafeEqual(x, y);
}

/** GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`. */
function githubVerified(secret, body, header) {
  if (!secret || !header?.startsWith('sha256=')) return false;
  return safeEqualHex(crypto.createHmac('sha256', secret).update(body).digest('hex'), header.slice(7));
}

/** Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (snapfn's own callbacks sign the same way). */
function stripeVerified(secret, body, header, now = Math.floor(Date.now() / 1000)) {
  if (!secret || !header) return false;
  const parts = header.split(',').map((p) => p.split('='));
  const t = Number(parts.find(([k]) => k === 't')?.[1]);
  if (!Number.isInteger(t) || Math.abs(now - t) > STRIPE_TOLERANCE_S) return false;
  const expected = crypto.createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
  return parts.some(([k, v]) => k === 'v1' && safeEqualHex(expected, v ?? ''));
}

export default async function (request) {
  // The raw bytes: a signature is over exactly what was sent, not a re-serialized JSON.
  const body = Buffer.from(await request.arrayBuffer());
  const github = request.headers.get('x-hub-signature-256');
  const stripe = request.headers.get('stripe-signature');
  const source = github ? 'github' : stripe ? 'stripe' : undefined;
  const ok = source === 'github' ? githubVerified(process.env.GITHUB_WEBHOOK_SECRET, body, github) : source === 'stripe' ? stripeVerified(process.env.STRIPE_WEBHOOK_SECRET, body, stripe) : false;
  if (!ok) return new Response(JSON.stringify({ error: 'bad or missing signature' }), { status: 401, headers: { 'content-type': 'application/json' } });
  const event = JSON.parse(body.toString('utf8'));
  const kind = source === 'github' ? request.headers.get('x-github-event') : event.type;
  console.log(`${source} event ${kind}`);
  return { received: true, source, kind };
}
