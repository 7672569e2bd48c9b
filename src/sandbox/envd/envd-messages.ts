import { z } from 'zod';
import type { EnvdMessage, Failure, HookRun, LogLine } from './protocol.ts';

/*
 * The host's validation of what envd sends. Each schema is checked against
 * the protocol's type (`satisfies`), so it cannot drift from what envd is
 * compiled against; envd itself carries no validator (it trusts its host).
 */

const FailureSchema = z.object({ code: z.string(), message: z.string(), name: z.string().optional(), stack: z.string().optional() }) satisfies z.ZodType<Failure>;
const LogLineSchema = z.object({ stream: z.enum(['stdout', 'stderr']), text: z.string(), t: z.number() }) satisfies z.ZodType<LogLine>;
const HookRunSchema = z.object({ ok: z.boolean(), ms: z.number(), error: FailureSchema.optional() }) satisfies z.ZodType<HookRun>;
const Headers = z.array(z.tuple([z.string(), z.string()]));

export const EnvdHello = z.object({
  type: z.literal('hello'),
  bootId: z.string(),
  connectCount: z.number(),
  invocations: z.number(),
  handlerType: z.string(),
  handlerShape: z.string().nullable(),
  handlerConfig: z.unknown(),
  loadError: FailureSchema.nullable(),
  afterRestore: HookRunSchema.nullable(),
  nodeVersion: z.string(),
});
export type EnvdHello = z.infer<typeof EnvdHello>;

export const EnvdMessageSchema = z.discriminatedUnion('type', [
  EnvdHello,
  z.object({ type: z.literal('pong'), id: z.number(), invocations: z.number(), rssBytes: z.number() }),
  z.object({ type: z.literal('response'), id: z.number(), status: z.number().int().min(200).max(599), headers: Headers }),
  z.object({
    type: z.literal('result'),
    id: z.number(),
    ok: z.boolean(),
    error: FailureSchema.optional(),
    logs: z.array(LogLineSchema),
    logsTruncated: z.boolean(),
    bodyBytes: z.number(),
    waitUntil: z.boolean().optional(),
  }),
  z.object({ type: z.literal('settled'), id: z.number(), state: z.enum(['settled', 'timeout']) }),
  z.object({ type: z.literal('rehearsed'), id: z.number(), ok: z.boolean(), failures: z.array(FailureSchema) }),
  z.object({ type: z.literal('warmed'), id: z.number() }),
  z.object({ type: z.literal('limits-set'), id: z.number() }),
  z.object({ type: z.literal('checkpoint-ready'), id: z.number() }),
  z.object({ type: z.literal('error'), id: z.number().optional(), error: FailureSchema }),
]) satisfies z.ZodType<EnvdMessage>;
