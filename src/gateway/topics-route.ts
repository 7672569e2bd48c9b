import { createRoute, z } from '@hono/zod-openapi';
import { updateTopics } from '../deploy/update-topics.ts';
import { withDeadline } from '../queue/deadline.ts';
import { MessageId, TopicName, type PublishAccepted, type TopicsView } from '../schemas/invocation.ts';
import {
  Bytes,
  errors,
  FunctionNameParam,
  FunctionView,
  INVALID,
  json,
  NO_FUNCTION,
  NO_QUEUE,
  ok,
  OPERATOR_ERRORS,
  PublishAccepted as PublishAcceptedSchema,
  REDIS_DOWN,
  TopicsRequest,
  TopicsView as TopicsViewSchema,
} from './api-components.ts';
import { declareRoute, type GatewayApp } from './declare.ts';
import type { GatewayDeps } from './env.ts';
import { QueueDisabledError } from './http-errors.ts';
import { readBody } from './read-body.ts';
import { functionView, publicBase } from './views.ts';

const REDIS_DEADLINE_MS = 5000;

/**
 * Topics (operator-only, under the /v1 guard): `POST /v1/topics/:topic`
 * publishes a message (body and headers) to every subscriber, `GET
 * /v1/topics` lists who subscribes to what, `PUT /v1/functions/:name/topics`
 * changes a function's subscriptions. See docs/triggers.md.
 */
const publishRoute = createRoute({
  method: 'post',
  path: '/v1/topics/{topic}',
  tags: ['topics'],
  summary: 'Publish a message (any body and headers): one queued invocation per subscriber, all or none',
  request: {
    params: z.object({ topic: TopicName }),
    headers: z.object({
      'x-message-id': MessageId.optional().openapi({ description: 'Publishing the same id again reaches no subscriber twice (default: a new id)' }),
      'idempotency-key': MessageId.optional().openapi({ description: 'Read as X-Message-Id when that is absent' }),
    }),
    body: { required: false, description: 'Any bytes, up to SNAPFN_MAX_BODY_BYTES; each subscriber gets them with the headers', content: { '*/*': { schema: Bytes } } },
  },
  responses: {
    202: { description: 'Queued for every subscriber', content: json(PublishAcceptedSchema) },
    ...errors({ ...INVALID, ...OPERATOR_ERRORS, 413: 'Body over SNAPFN_MAX_BODY_BYTES (code payload_too_large)', ...NO_QUEUE, ...REDIS_DOWN }),
  },
});

const listRoute = createRoute({
  method: 'get',
  path: '/v1/topics',
  tags: ['topics'],
  summary: 'Topics and their subscribers',
  responses: { 200: ok(TopicsViewSchema), ...errors({ ...OPERATOR_ERRORS, ...NO_QUEUE, ...REDIS_DOWN }) },
});

const subscribeRoute = createRoute({
  method: 'put',
  path: '/v1/functions/{name}/topics',
  tags: ['topics'],
  summary: 'New version subscribed to these topics (empty: none), same template',
  request: { params: FunctionNameParam, body: { required: true, content: json(TopicsRequest) } },
  responses: { 200: ok(FunctionView), ...errors({ ...INVALID, ...OPERATOR_ERRORS, ...NO_FUNCTION, 409: 'No active version (code conflict)', 413: 'Body over 64 KiB (code payload_too_large)' }) },
});

export function mountTopicRoutes(app: GatewayApp, deps: GatewayDeps): void {
  const functions = () => {
    if (!deps.queue) throw new QueueDisabledError('publishing to a topic');
    return deps.queue;
  };

  declareRoute(app, publishRoute, async (c) => {
    const { topic } = c.req.valid('param');
    const queue = functions();
    const headers = c.req.valid('header');
    const messageId = headers['x-message-id'] ?? headers['idempotency-key'];
    const body = await readBody(c.req.raw, deps.config.maxBodyBytes);
    // 503 when Redis cannot take it in time: the publisher retries with its X-Message-Id, and nothing runs twice.
    const accepted: PublishAccepted = await withDeadline(`publishing to ${topic}`, REDIS_DEADLINE_MS * 2, () =>
      queue.topics.publish(topic, {
        headers: [...c.req.raw.headers.entries()] as Array<[string, string]>,
        ...(body.length > 0 ? { bodyBase64: body.toString('base64') } : {}),
        ...(messageId !== undefined ? { messageId } : {}),
      }),
    );
    return c.json(accepted, 202);
  });

  declareRoute(app, listRoute, async (c) => {
    const topics = await withDeadline('listing topics', REDIS_DEADLINE_MS, () => functions().subscriptions.list());
    return c.json({ topics } satisfies TopicsView);
  });

  declareRoute(
    app,
    subscribeRoute,
    async (c) => {
      const { name } = c.req.valid('param');
      await deps.store.require(name);
      const { fn, version } = await updateTopics(deps, name, c.req.valid('json').topics);
      return c.json(functionView(fn, version, publicBase(deps)));
    },
    { body: { maxBytes: 64 * 1024, subject: 'topics update' } },
  );
}
