// CPU per request, split by where it is spent: this process (the gateway,
// and autocannon, which runs in it) and every sandbox (the Sentry, the gofer
// and the guest's own work, from the cpuacct controller of snapfn's
// sandbox cgroups). Load-independent enough to compare across rows where
// latency under a shared 2-core machine is not.
import fs from 'node:fs/promises';

const V1 = '/sys/fs/cgroup/cpuacct/snapfn/cpuacct.usage';
const V2 = '/sys/fs/cgroup/snapfn/cpu.stat';

/** CPU time of all snapfn sandboxes so far, in ms (undefined where neither cgroup layout is readable). */
async function sandboxesCpuMs(): Promise<number | undefined> {
  const v1 = await fs.readFile(V1, 'utf8').catch(() => undefined);
  if (v1 !== undefined) return Number(v1.trim()) / 1e6;
  const v2 = await fs.readFile(V2, 'utf8').catch(() => undefined);
  const usec = v2 && /^usage_usec (\d+)$/m.exec(v2)?.[1];
  return usec ? Number(usec) / 1000 : undefined;
}

function processCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

export interface CpuSplit {
  process_ms: number;
  sandboxes_ms: number | null;
}

/** Runs `work` and reports the CPU it cost here and in the sandboxes. */
export async function withCpuSplit<T>(work: () => Promise<T>): Promise<{ value: T; cpu: CpuSplit }> {
  const [process0, sandboxes0] = [processCpuMs(), await sandboxesCpuMs()];
  const value = await work();
  const [process1, sandboxes1] = [processCpuMs(), await sandboxesCpuMs()];
  return {
    value,
    cpu: {
      process_ms: process1 - process0,
      sandboxes_ms: sandboxes0 === undefined || sandboxes1 === undefined ? null : sandboxes1 - sandboxes0,
    },
  };
}
