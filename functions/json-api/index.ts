import { z } from 'zod';

/** What POST /fn/json-api accepts. */
const Order = z.object({
  item: z.string().min(1).max(100),
  quantity: z.number().int().min(1).max(1000),
  unitPriceCents: z.number().int().min(0),
  coupon: z.string().regex(/^[A-Z0-9]{4,12}$/).optional(),
});

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8' } });

/** Validates an order and prices it; anything malformed is a 400 with the reasons. */
export default async function (request: Request) {
  if (request.method !== 'POST') return json(405, { error: 'POST a JSON order' });
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return json(400, { error: 'the body is not valid JSON' });
  }
  const parsed = Order.safeParse(body);
  if (!parsed.success) {
    return json(400, { error: 'invalid order', issues: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) });
  }
  const order = parsed.data;
  const subtotal = order.quantity * order.unitPriceCents;
  const discount = order.coupon === 'SNAPFN10' ? Math.round(subtotal / 10) : 0;
  return json(200, { ...order, subtotalCents: subtotal, discountCents: discount, totalCents: subtotal - discount });
}

// One sandbox stays ready after traffic stops (the default, 0, scales to zero).
export const config = { minWarm: 1 };
