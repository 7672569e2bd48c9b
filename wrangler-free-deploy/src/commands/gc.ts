import { GcReport, GcRequest } from '../../../src/schemas/gc.ts';
import { zodMessage } from '../../../src/schemas/zod-message.ts';
import { UsageError } from '../cli-error.ts';
import { intOption, parseCommand, type Command } from '../context.ts';
import { formatBytes } from '../format.ts';

export const gc: Command = {
  name: 'gc',
  summary: 'remove templates no kept version needs (the gateway also does this after every deploy and delete)',
  usage: 'fn gc [--dry-run] [--keep N] [--json]',
  async run(args, ctx) {
    const { values } = parseCommand(this, args, { 'dry-run': { type: 'boolean' }, keep: { type: 'string' } }, { min: 0, max: 0 });
    // The API's own schema: a request the CLI accepts is one the gateway accepts.
    const request = GcRequest.safeParse({ ...(values['dry-run'] ? { dryRun: true } : {}), ...(values.keep === undefined ? {} : { keepVersions: intOption('keep', values.keep) }) });
    if (!request.success) throw new UsageError(`--keep: ${zodMessage(request.error)}`);
    const report = await ctx.client().call(GcReport, 'POST', '/v1/admin/gc', { json: request.data });
    if (values.json) return ctx.out(JSON.stringify(report, null, 2));
    const verb = report.dryRun ? 'would remove' : 'removed';
    for (const r of report.removed) ctx.out(`  ${verb} ${r.id} (${formatBytes(r.bytes)}, built ${r.createdAt})`);
    ctx.out(`${verb} ${report.removed.length} template(s), ${formatBytes(report.bytesFreed)}${report.dryRun ? '' : ' freed'}; kept ${report.kept.length} (keeping the last ${report.keepVersions} version(s) per function)`);
  },
};
