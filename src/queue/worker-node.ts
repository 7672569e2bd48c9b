import type { Redis } from 'ioredis';
import type { InvocationEngine } from '../orchestrator/types.ts';
import type { SecretsKey } from '../secrets/envelope.ts';
import { DeploymentRegistry } from './deployment-registry.ts';
import { InvocationWorkers } from './invocation-worker.ts';
import { closeConnections, connectRedis, cutConnections, settleWithin } from './redis-connection.ts';
import { ResultStream } from './result-stream.ts';

export interface WorkerNodeOptions {
  redisUrl: string;
  engine: InvocationEngine;
  /** How often to look for functions deployed or deleted since (the registry is polled, not pushed). */
  pollMs?: number;
  workerId?: string;
  /** Opens the deployments' secrets, seals the results this node sends back (the gateways' key). */
  secretsKey?: SecretsKey;
  log?: (message: string) => void;
}

/**
 * A node that only takes queued invocations: it serves the queue of every
 * function the gateway has published to the deployment registry, resolves
 * deployments from there, and sends results (logs) back through the result
 * stream. Works with the same engine as a gateway node.
 */
export class WorkerNode {
  readonly workers: InvocationWorkers;
  readonly #redis: Redis;
  readonly #registry: DeploymentRegistry;
  readonly #engine: InvocationEngine;
  readonly #pollMs: number;
  readonly #log: (message: string) => void;
  #served = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  #closed = false;

  constructor(options: WorkerNodeOptions) {
    this.#log = options.log ?? ((m) => console.error(`snapfn worker: ${m}`));
    this.#engine = options.engine;
    this.#pollMs = options.pollMs ?? 2000;
    this.#redis = connectRedis(options.redisUrl, { name: 'snapfn-worker-node' });
    this.#redis.on('error', () => {}); // reported through the workers' onError, once is enough
    this.#registry = new DeploymentRegistry(this.#redis, options.secretsKey);
    const results = new ResultStream(this.#redis, { secretsKey: options.secretsKey });
    this.workers = new InvocationWorkers({
      redisUrl: options.redisUrl,
      engine: options.engine,
      resolveDeployment: this.#registry.resolver(),
      onResult: (event) => results.publish(event),
      reserveForDirect: 0,
      ...(options.secretsKey ? { secretsKey: options.secretsKey } : {}),
      ...(options.workerId ? { workerId: options.workerId } : {}),
      onError: (err) => this.#log(err.message),
    });
  }

  /** Functions served right now. */
  functions(): string[] {
    return [...this.#served];
  }

  async start(): Promise<void> {
    await this.refresh();
    const loop = () => {
      this.#timer = setTimeout(() => {
        void this.refresh()
          .catch((err: Error) => this.#log(`could not read the deployment registry: ${err.message}`))
          .finally(() => {
            if (!this.#closed) loop();
          });
      }, this.#pollMs);
    };
    loop();
  }

  /** Follow the registry once: start queues of new functions, stop and drop those deleted. */
  refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      try {
        const active = await this.#registry.active();
        if (this.#closed) return;
        await this.workers.sync(active.keys());
        for (const name of this.#served) if (!active.has(name)) await this.#engine.deactivate(name);
        this.#served = new Set(active.keys());
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  /** Stops taking jobs and waits for the running ones; the engine stays the caller's. */
  async close(options: { force?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    // A registry read waits for Redis as long as it is away.
    if (this.#refreshing) await settleWithin(this.#refreshing, 2000, () => cutConnections(this.#redis));
    await this.workers.close(options);
    await closeConnections(this.#redis);
  }

  /** Ends every Redis connection now (a forced shutdown): a close() in progress then finishes at once. */
  cut(): void {
    cutConnections(this.#redis);
    this.workers.cut();
  }
}
