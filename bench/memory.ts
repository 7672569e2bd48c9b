import fs from 'node:fs/promises';

/**
 * Memory held by the host processes of one sandbox: the Sentry, the gofer
 * and the foreground `runsc restore` that supervises them (all carry the
 * container id in their command line). PSS splits pages shared between
 * sandboxes (the runsc binary, the template's page cache) fairly; RSS counts
 * them in full for each.
 */
export async function sandboxMemory(containerId: string): Promise<{ rssMb: number; pssMb: number; processes: number }> {
  let rss = 0;
  let pss = 0;
  let processes = 0;
  for (const pid of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(containerId) || !cmdline.includes('runsc')) continue;
    const rollup = await fs.readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
    rss += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    pss += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    processes++;
  }
  return { rssMb: Math.round(rss / 102.4) / 10, pssMb: Math.round(pss / 102.4) / 10, processes };
}
