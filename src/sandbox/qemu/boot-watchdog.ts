import fs from 'node:fs/promises';

/** The guest kernel printed this once it hands over to the initramfs. */
const REACHED_USERSPACE = 'Run /init as init process';

/**
 * Rejects if the guest kernel has not reached userspace within `ms`. Under
 * TCG a boot occasionally stalls early (timer calibration under host load);
 * such a boot never recovers, so it is cheaper to kill and retry it than to
 * wait for envd's much longer timeout. `stop()` disarms it.
 */
export function bootWatchdog(consoleLog: string, ms: number): { stalled: Promise<never>; stop: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const stalled = new Promise<never>((_, reject) => {
    const started = Date.now();
    const check = async () => {
      if (stopped) return;
      const text = await fs.readFile(consoleLog, 'utf8').catch(() => '');
      if (text.includes(REACHED_USERSPACE)) return;
      if (Date.now() - started > ms) {
        reject(new Error(`boot stalled: the kernel did not reach userspace within ${ms} ms`));
        return;
      }
      timer = setTimeout(check, 250);
    };
    timer = setTimeout(check, 250);
  });
  stalled.catch(() => {});
  return {
    stalled,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
