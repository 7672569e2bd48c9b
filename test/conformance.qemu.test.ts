// The driver conformance suite (test/conformance/) on QEMU: every case. Where
// there is no hardware KVM (as on CI) it runs under TCG: ~1 s per fresh
// invocation and ~20-40 s per template, so the file takes ~6 min on a 2-core
// machine; SNAPFN_CONFORMANCE_QEMU_CASES (comma-separated case names) narrows
// it for a quicker local run.
import { execa } from 'execa';
import type { CaseName } from './conformance/cases.ts';
import { conformanceSuite } from './conformance/suite.ts';

const installed = (await execa('qemu-system-x86_64', ['--version'], { reject: false, stdin: 'ignore' })).exitCode === 0;
const only = process.env.SNAPFN_CONFORMANCE_QEMU_CASES?.split(',').map((s) => s.trim()).filter(Boolean) as CaseName[] | undefined;
conformanceSuite({
  driver: 'qemu',
  skip: installed ? undefined : 'qemu-system-x86_64 is not installed (npm test installs it: scripts/setup.sh)',
  ...(only?.length ? { cases: only } : {}),
  timeoutMs: 15 * 60_000,
});
