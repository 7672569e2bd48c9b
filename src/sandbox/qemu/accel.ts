import fs from 'node:fs';

export type QemuAccel = 'kvm' | 'tcg';

/**
 * Whether this host has *hardware* KVM. /dev/kvm alone is not enough: the
 * PVM software hypervisor (kernel module kvm_pvm) also provides a /dev/kvm,
 * on which a nested guest runs but QEMU's microVM snapshot path is untested
 * and gVisor is the better choice. Hardware KVM = /dev/kvm, no kvm_pvm, and
 * the CPU advertising vmx (Intel) or svm (AMD).
 */
export function detectHardwareKvm(): { kvm: boolean; reason: string } {
  if (!fs.existsSync('/dev/kvm')) return { kvm: false, reason: 'no /dev/kvm' };
  if (fs.existsSync('/sys/module/kvm_pvm')) return { kvm: false, reason: '/dev/kvm is the PVM software hypervisor (kvm_pvm)' };
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) return { kvm: false, reason: 'CPU flags lack vmx/svm' };
  return { kvm: true, reason: '/dev/kvm with vmx/svm' };
}

/** The accelerator a QEMU driver uses here: SNAPFN_QEMU_ACCEL overrides detection. */
export function qemuAccel(env: NodeJS.ProcessEnv = process.env): QemuAccel {
  const forced = env.SNAPFN_QEMU_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  return detectHardwareKvm().kvm ? 'kvm' : 'tcg';
}
