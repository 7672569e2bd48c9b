import fs from 'node:fs';
import path from 'node:path';

/** What the host checks read; injectable so the rules are testable on any machine. */
export interface HostProbe {
  exists(file: string): boolean;
  readFile(file: string): string;
  isExecutable(file: string): boolean;
}

const realProbe: HostProbe = {
  exists: (file) => fs.existsSync(file),
  readFile: (file) => fs.readFileSync(file, 'utf8'),
  isExecutable: (file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  },
};

export type FirecrackerSupport = { ok: true; binary: string; reason: string } | { ok: false; reason: string };

/**
 * Whether the Firecracker driver can run here: a `firecracker` binary
 * (SNAPFN_FIRECRACKER_BIN, else on PATH) and *hardware* KVM. /dev/kvm alone
 * is not enough: the PVM software hypervisor (kernel module kvm_pvm) also
 * offers one, and Firecracker's snapshot restore is neither supported nor
 * tested on it. Hardware KVM = /dev/kvm, no kvm_pvm, and vmx/svm in the CPU
 * flags. The driver is only selected when this says ok; its end-to-end
 * tests skip with `reason` otherwise.
 */
export function detectFirecracker(env: NodeJS.ProcessEnv = process.env, probe: HostProbe = realProbe): FirecrackerSupport {
  // Every missing piece is reported, not just the first: the operator fixes them all at once.
  const problems: string[] = [];
  const binary = findBinary(env, probe);
  if (!binary) problems.push('no firecracker binary (set SNAPFN_FIRECRACKER_BIN or put firecracker on PATH; see docs/firecracker.md)');
  if (!probe.exists('/dev/kvm')) {
    const pvm = probe.exists('/sys/module/kvm_pvm') ? '; kvm_pvm is loaded: a PVM host at best' : '';
    problems.push(`no /dev/kvm (no hardware virtualisation exposed to this machine${pvm})`);
  }
  else if (probe.exists('/sys/module/kvm_pvm')) problems.push('/dev/kvm is the PVM software hypervisor (kvm_pvm), not hardware KVM');
  let cpuinfo = '';
  try {
    cpuinfo = probe.readFile('/proc/cpuinfo');
  } catch {
    // unreadable: treated as no flags
  }
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) problems.push('the CPU flags lack vmx/svm');
  if (!binary || problems.length > 0) return { ok: false, reason: problems.join('; ') };
  return { ok: true, binary, reason: `${binary} with hardware KVM` };
}

function findBinary(env: NodeJS.ProcessEnv, probe: HostProbe): string | undefined {
  const forced = env.SNAPFN_FIRECRACKER_BIN;
  if (forced) return probe.isExecutable(forced) ? forced : undefined;
  for (const dir of (env.PATH ?? '').split(':').filter(Boolean)) {
    const candidate = path.join(dir, 'firecracker');
    if (probe.isExecutable(candidate)) return candidate;
  }
  return undefined;
}
