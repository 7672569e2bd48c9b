// The driver conformance suite (test/conformance/) on QEMU. Where there is no
// hardware KVM (as on CI) it runs under TCG, ~1 s per fresh invocation and
// ~20 s per template: every case runs but 'native-addon' (better-sqlite3's
// ~30 MB bundle and its addon load take minutes to build and snapshot under
// TCG, and the addon's loading is the same guest code the gVisor run proves),
// keeping the file under ~6 min on a 2-core machine. With hardware KVM every
// case runs.
import { execa } from 'execa';
import { detectHardwareKvm } from '../src/sandbox/qemu/accel.ts';
import type { CaseName } from './conformance/cases.ts';
import { CASES } from './conformance/cases.ts';
import { conformanceSuite } from './conformance/suite.ts';

const TCG_LEAVES_OUT: CaseName[] = ['native-addon'];

const installed = (await execa('qemu-system-x86_64', ['--version'], { reject: false, stdin: 'ignore' })).exitCode === 0;
const kvm = detectHardwareKvm().kvm;
conformanceSuite({
  driver: 'qemu',
  skip: installed ? undefined : 'qemu-system-x86_64 is not installed (npm test installs it: scripts/setup.sh)',
  cases: kvm ? undefined : CASES.map((c) => c.name).filter((n) => !TCG_LEAVES_OUT.includes(n)),
  timeoutMs: 12 * 60_000,
});
