// The driver conformance suite (test/conformance/) on Firecracker, wherever a
// firecracker binary, hardware KVM and its guest images exist: every case but
// 'eval' (the operator's guest image is the base flavor only, so the eval
// root filesystem does not exist for this driver yet, docs/firecracker.md);
// elsewhere skipped with the reason (this repository's CI machines have a PVM
// /dev/kvm: test/firecracker.*.test.ts cover the driver there with a fake VMM).
import { detectFirecracker } from '../src/sandbox/firecracker/host-support.ts';
import { CASES } from './conformance/cases.ts';
import { conformanceSuite } from './conformance/suite.ts';

const support = detectFirecracker();
const images = process.env.SNAPFN_FC_KERNEL && process.env.SNAPFN_FC_ROOTFS ? undefined : 'SNAPFN_FC_KERNEL and SNAPFN_FC_ROOTFS (guest kernel and root filesystem image, docs/firecracker.md) are not set';
conformanceSuite({ driver: 'firecracker', skip: support.ok ? images : support.reason, cases: CASES.map((c) => c.name).filter((n) => n !== 'eval'), timeoutMs: 10 * 60_000 });
