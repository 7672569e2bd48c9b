/** The queue layer: BullMQ on Redis for bursts, async invocations and schedules. See docs/queue.md. */
export { startLocalRedis, SupervisedRedis, type LocalRedis, type LocalRedisOptions, type SupervisedRedisOptions } from './redis-server.ts';
export { connectRedis, cutConnections, closeConnections } from './redis-connection.ts';
export { RedisHealth, type RedisHealthState } from './redis-health.ts';
export { InvocationQueue, DEFAULT_RETENTION, type InvocationQueueOptions, type EnqueueData, type EnqueueOptions, type FunctionQueueLimits, type RetentionPolicy } from './invocation-queue.ts';
export { InvocationWorkers, type InvocationWorkersOptions, type InvocationResultEvent, type InvocationAttemptFailedEvent, type ResolveDeployment } from './invocation-worker.ts';
export { Schedules, SCHEDULE_HEADERS, type ScheduleOptions, type ScheduleView } from './schedules.ts';
export { DeploymentRegistry } from './deployment-registry.ts';
export { FunctionQueues, type FunctionQueuesOptions } from './function-queues.ts';
export { withDeadline } from './deadline.ts';
export { ResultStream, RESULT_STREAM_KEY } from './result-stream.ts';
export { WorkerNode, type WorkerNodeOptions } from './worker-node.ts';
export { linkTemplateStore } from './shared-templates.ts';
export { CallerGoneError, EngineRefusedError, InvocationFailedError, QueueUnavailableError, QueueWaitTimeoutError, RedisStartError } from './errors.ts';
export { queueName, type InvocationJobData, type InvocationJobResult, type InvocationMode, type InvocationStatus } from './job-data.ts';
