import type { Hono } from 'hono';
import { echo, InvalidInputError } from '../errors.ts';
import { updateTopics } from '../deploy/update-topics.ts';
import { withDeadline } from '../queue/deadline.ts';
import { MessageId, TopicName, TopicsRequest, type PublishAccepted, type TopicsView } from '../schemas/invocation.ts';
import { zodMessage } from '../schemas/zod-message.ts';
import type { GatewayDeps, GatewayEnv } from './env.ts';
import { QueueDisabledError } from './http-errors.ts';
import { parseJsonBody, readBody } from './read-body.ts';
import { functionView, publicBase } from './views.ts';

const REDIS_DEADLINE_MS = 5000;

/**
 * Topics (operator-only, under the /v1 guard): `POST /v1/topics/:topic`
 * publishes a message (body and headers) to every subscriber, `GET
 * /v1/topics` lists who subscribes to what, `PUT /v1/functions/:name/topics`
 * changes a function's subscriptions. See docs/triggers.md.
 */
export function mountTopicRoutes(app: Hono<GatewayEnv>, deps: GatewayDeps): void {
  const functions = () => {
    if (!deps.queue) throw new QueueDisabledError('publishing to a topic');
    return deps.queue;
  };

  app.post('/v1/topics/:topic', async (c) => {
    const topic = TopicName.safeParse(c.req.param('topic'));
    if (!topic.success) throw new InvalidInputError(`${echo(c.req.param('topic'))}: ${zodMessage(topic.error)}`);
    const queue = functions();
    const rawId = c.req.header('x-message-id') ?? c.req.header('idempotency-key');
    const messageId = rawId === undefined ? undefined : MessageId.safeParse(rawId.trim());
    if (messageId && !messageId.success) throw new InvalidInputError(`X-Message-Id: ${zodMessage(messageId.error)}`);
    const body = await readBody(c.req.raw, deps.config.maxBodyBytes);
    const headers = [...c.req.raw.headers.entries()] as Array<[string, string]>;
    // 503 when Redis cannot take it in time: the publisher retries with its X-Message-Id, and nothing runs twice.
    const accepted: PublishAccepted = await withDeadline(`publishing to ${topic.data}`, REDIS_DEADLINE_MS * 2, () =>
      queue.topics.publish(topic.data, {
        headers,
        ...(body.length > 0 ? { bodyBase64: body.toString('base64') } : {}),
        ...(messageId?.success ? { messageId: messageId.data } : {}),
      }),
    );
    return c.json(accepted, 202);
  });

  app.get('/v1/topics', async (c) => {
    const topics = await withDeadline('listing topics', REDIS_DEADLINE_MS, () => functions().subscriptions.list());
    return c.json({ topics } satisfies TopicsView);
  });

  app.put('/v1/functions/:name/topics', async (c) => {
    const name = c.req.param('name');
    await deps.store.require(name);
    const request = parseJsonBody(TopicsRequest, await readBody(c.req.raw, 64 * 1024), 'topics update');
    const { fn, version } = await updateTopics(deps, name, request.topics);
    return c.json(functionView(fn, version, publicBase(deps)));
  });
}
