import net from 'node:net';
import { EventEmitter } from 'node:events';

/** A QMP event as QEMU sends it (MIGRATION, STOP, RESUME, VSERPORT_CHANGE...). */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

/**
 * Minimal QEMU Machine Protocol client over the VM's QMP Unix socket. One
 * command in flight at a time (QMP answers in order), events are re-emitted
 * as 'event'. The socket's 'close' means QEMU is gone.
 */
export class QmpClient extends EventEmitter {
  readonly #socket: net.Socket;
  #buffered = '';
  #queue: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  #closed = false;

  private constructor(socket: net.Socket) {
    super();
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.#onData(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closed = true;
      for (const w of this.#queue.splice(0)) w.reject(new Error('QMP connection closed'));
      this.emit('close');
    });
  }

  /** Dials the socket (retrying while QEMU creates it), reads the greeting, enables commands. */
  static async connect(socketPath: string, timeoutMs: number, abort?: Promise<never>): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const socket = await Promise.race([dial(socketPath), ...(abort ? [abort] : [])]).catch((err: Error) => {
        if (Date.now() > deadline || abort === undefined) throw err;
        return undefined;
      });
      if (socket) {
        const client = new QmpClient(socket);
        // The greeting arrives as the answer to a pseudo-command.
        await Promise.race([new Promise((resolve, reject) => client.#queue.push({ resolve, reject })), ...(abort ? [abort] : [])]);
        await client.execute('qmp_capabilities');
        return client;
      }
      if (Date.now() > deadline) throw new Error(`QMP socket ${socketPath} did not come up within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error('QMP connection closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ resolve, reject });
      this.#socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  /** Resolves with the first event matching `match`, or rejects after timeoutMs / on close. */
  waitEvent(match: (e: QmpEvent) => boolean, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (!match(e)) return;
        done();
        resolve(e);
      };
      const onClose = () => {
        done();
        reject(new Error('QEMU exited while waiting for an event'));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching QMP event within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      this.on('event', onEvent);
      this.once('close', onClose);
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #onData(data: string): void {
    this.#buffered += data;
    let nl: number;
    while ((nl = this.#buffered.indexOf('\n')) >= 0) {
      const line = this.#buffered.slice(0, nl).trim();
      this.#buffered = this.#buffered.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (typeof msg.event === 'string') {
        this.emit('event', msg as unknown as QmpEvent);
        continue;
      }
      const waiter = this.#queue.shift();
      if (!waiter) continue;
      if (msg.error) {
        const err = msg.error as { class?: string; desc?: string };
        waiter.reject(new Error(`QMP ${err.class ?? 'error'}: ${err.desc ?? line}`));
      } else {
        waiter.resolve(msg.return ?? msg.QMP);
      }
    }
  }
}

function dial(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}
