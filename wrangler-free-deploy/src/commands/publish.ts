import { MessageId, PublishAccepted, TopicName } from '../../../src/schemas/invocation.ts';
import { zodMessage } from '../../../src/schemas/zod-message.ts';
import { UsageError } from '../cli-error.ts';
import { parseCommand, type Command } from '../context.ts';
import { requestBody } from './invoke.ts';

export const publish: Command = {
  name: 'publish',
  summary: 'publish a message to a topic: one queued invocation per subscribed function (prints their ids)',
  usage: 'fn publish <topic> [--data JSON|@file|@-] [--message-id ID] [--json]',
  async run(args, ctx) {
    const { values, positionals } = parseCommand(this, args, { data: { type: 'string', short: 'd' }, 'message-id': { type: 'string' } }, { min: 1, max: 1 });
    const topic = TopicName.safeParse(positionals[0]);
    if (!topic.success) throw new UsageError(zodMessage(topic.error));
    const id = values['message-id'] === undefined ? undefined : MessageId.safeParse(values['message-id']);
    if (id && !id.success) throw new UsageError(`--message-id: ${zodMessage(id.error)}`);
    const body = await requestBody(values.data, ctx);
    const accepted = await ctx.client().call(PublishAccepted, 'POST', `/v1/topics/${topic.data}`, {
      ...(body ? { body: body.body } : {}),
      headers: { ...(body ? { 'content-type': body.contentType } : {}), ...(id?.success ? { 'x-message-id': id.data } : {}) },
    });
    if (values.json) return ctx.out(JSON.stringify(accepted, null, 2));
    for (const i of accepted.invocations) ctx.out(`${i.function}\t${i.id}`);
    ctx.note(accepted.invocations.length === 0 ? `no function subscribes to ${topic.data}: the message was dropped` : `message ${accepted.messageId} queued for ${accepted.invocations.length} subscriber(s); see each with: fn invocation <id>`);
  },
};
