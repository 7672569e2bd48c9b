// One runner child process and everything it says: stdout, stderr, and
// JSON lines on fd 3 (its control channel, see the *-runner files).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { OutputSink } from './eval-limits.mjs';

const PROCESS_LIMIT_EARLY = /fork: retry: |\[Errno 11\] Resource temporarily unavailable|can't start new thread/;

export class Run {
  /**
   * @param {string[]} argv the runner's command line (already wrapped in prlimit)
   * @param {{ cwd: string, env: Record<string, string>, outputCapBytes: number, resultCapBytes: number }} options
   */
  constructor(argv, options) {
    this.stdout = new OutputSink();
    this.stderr = new OutputSink();
    this.messages = [];
    /** 'output_limit' | 'process_limit' once the run was stopped for one. */
    this.limit = null;
    this.resultTooLarge = false;
    this.exit = null;
    this.drained = false;
    this.listeners = new Set();
    /** When each event first happened (performance.now()), for the phases an evaluation reports. */
    this.at = {};
    this.options = options;
    this.child = spawn(argv[0], argv.slice(1), { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe', 'pipe'], detached: true });
    /** Resolves once the process itself is gone (a reported exit comes before it). */
    this.gone = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.on('exit', (code, signal) => this.#exited({ code, signal }));
    this.child.on('error', (err) => this.#exited({ code: null, signal: null, spawnError: err.message }));
    this.child.stdin.on('error', () => {});
    this.child.stdout.on('data', (d) => this.#output(this.stdout, d));
    this.child.stderr.on('data', (d) => {
      this.#output(this.stderr, d);
      if (!this.limit && PROCESS_LIMIT_EARLY.test(this.stderr.tail())) this.stop('process_limit');
    });
    // Output is complete only when every process holding the pipes (background jobs too) closed them.
    void Promise.all([closed(this.child.stdout), closed(this.child.stderr)]).then(() => {
      this.drained = true;
      this.#event('drained');
    });
    this.#readControl(this.child.stdio[3]);
  }

  /** The runner said it is done, its output is closed and nothing hit a limit: nothing is left to stop before answering. */
  get clean() {
    return !!this.exit?.reported && this.drained && !this.limit;
  }

  message(type) {
    return this.messages.find((m) => m.type === type);
  }

  send(line) {
    this.child.stdio[3].write(line + '\n');
  }

  /** Stops the run for a limit: its whole process group is killed. */
  stop(limit) {
    this.limit ??= limit;
    this.kill();
    this.#event('limit');
  }

  kill() {
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  /** Resolves with the first of `events` that has happened or happens, or 'deadline' after `ms`. */
  waitFor(events, ms) {
    const happened = (e) => (e === 'exit' ? this.exit : e === 'limit' ? this.limit : e === 'drained' ? this.drained : this.message(e));
    const now = events.find(happened);
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const listener = (event) => {
        if (!events.includes(event)) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(event);
      };
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        resolve('deadline');
      }, ms);
      this.listeners.add(listener);
    });
  }

  #exited(exit) {
    this.exit ??= exit;
    this.#event('exit');
  }

  #event(event) {
    this.at[event] ??= performance.now();
    for (const listener of [...this.listeners]) listener(event);
  }

  #output(sink, data) {
    sink.add(data);
    if (!this.limit && this.stdout.total + this.stderr.total > this.options.outputCapBytes) this.stop('output_limit');
  }

  #readControl(socket) {
    let line = '';
    socket.on('error', () => {});
    socket.setEncoding('utf8');
    socket.on('data', (data) => {
      line += data;
      let nl;
      while ((nl = line.indexOf('\n')) >= 0) {
        const message = safeJson(line.slice(0, nl));
        line = line.slice(nl + 1);
        if (message?.type === 'exit') {
          // The runner's own last word (js-runner.cjs): its output is closed and it is ending.
          if (Number.isInteger(message.code)) this.#exited({ code: message.code, signal: null, reported: true });
        } else if (message?.type) {
          this.messages.push(message);
          this.#event(message.type);
        }
      }
      if (line.length > this.options.resultCapBytes + 4096) {
        this.resultTooLarge = true;
        line = '';
      }
    });
  }
}

function closed(stream) {
  return new Promise((resolve) => (stream.closed ? resolve() : stream.once('close', resolve)));
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Tasks (threads) alive in the sandbox: what RLIMIT_NPROC counts. */
export function countTasks() {
  let tasks = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      tasks += Number(/^Threads:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 1);
    } catch {
      // exited meanwhile
    }
  }
  return tasks;
}
