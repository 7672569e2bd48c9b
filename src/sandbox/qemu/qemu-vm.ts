import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { logTail } from '../lifecycle/log-tail.ts';
import { MICROVM_GATEWAY_IP, MICROVM_GUEST_IP, MICROVM_GUEST_MAC, MICROVM_PREFIX, MICROVM_TAP } from '../network/guest-tap.ts';
import type { QemuAccel } from './accel.ts';
import type { GuestImage } from './guest-image.ts';
import { QmpClient } from './qmp.ts';

/**
 * Kernel command line. earlyprintk and no `quiet`: ~3 in 40 TCG boots with
 * `quiet` hung, none without. No nosmp/acpi=off: either silences the serial
 * console on microvm.
 */
const CMDLINE = 'console=ttyS0 earlyprintk=ttyS0 reboot=t panic=-1 i8042.noaux i8042.nokbd';

export interface VmSpec {
  accel: QemuAccel;
  guest: GuestImage;
  /** This VM's own directory: sockets, console log, its disk overlay. */
  stateDir: string;
  /** qcow2 the guest writes to (vda). */
  disk: string;
  /** Read-only ext4 image with the bundle (vdb). */
  bundleDisk: string;
  memoryMb: number;
  /**
   * Guest RAM in a file: share=true for a template build (the file *is* the
   * memory snapshot), false on restore (MAP_PRIVATE: the template's file is
   * never written, each VM's changes stay in its own anonymous pages).
   * Absent: anonymous RAM (cold boot).
   */
  ram?: { file: string; share: boolean };
  /** Load this migration stream instead of booting. */
  incomingState?: string;
  /**
   * A virtio-net NIC on the slot's tap: QEMU runs inside the slot's network
   * namespace, where the tap of that name exists (guest-tap.ts). The NIC,
   * its MAC and the guest's address are part of the snapshot, so a template
   * built with one must be restored with one, and vice versa.
   */
  nic?: { nsPath: string };
}

/** One QEMU process with its QMP connection. */
export class QemuVm {
  readonly qmp: QmpClient;
  readonly exited: Promise<number>;
  readonly envdSocket: string;
  readonly consoleLog: string;
  readonly pid: number;
  readonly #child: ResultPromise;

  private constructor(child: ResultPromise, exited: Promise<number>, qmp: QmpClient, stateDir: string) {
    this.#child = child;
    this.exited = exited;
    this.qmp = qmp;
    this.pid = child.pid ?? -1;
    this.envdSocket = path.join(stateDir, 'envd.sock');
    this.consoleLog = path.join(stateDir, 'console.log');
  }

  static async start(spec: VmSpec): Promise<QemuVm> {
    const qmpSocket = path.join(spec.stateDir, 'qmp.sock');
    const consoleLog = path.join(spec.stateDir, 'console.log');
    const args = qemuArgs(spec, qmpSocket, consoleLog);
    await fs.writeFile(path.join(spec.stateDir, 'qemu.args'), args.join(' ') + '\n');
    // nsenter execs QEMU: the child's pid is QEMU's, so kill() reaches it.
    const [cmd, cmdArgs]: [string, string[]] = spec.nic ? ['nsenter', [`--net=${spec.nic.nsPath}`, 'qemu-system-x86_64', ...args]] : ['qemu-system-x86_64', args];
    const child = execa(cmd, cmdArgs, {
      stdin: 'ignore',
      stdout: { file: path.join(spec.stateDir, 'qemu.log') },
      stderr: { file: path.join(spec.stateDir, 'qemu.log') },
      reject: false,
    });
    const exited = child.then((r) => r.exitCode ?? -1);
    const died = exited.then(async (code): Promise<never> => {
      throw new Error(`qemu exited with code ${code}: ${await logTail(path.join(spec.stateDir, 'qemu.log'))}`);
    });
    died.catch(() => {});
    try {
      const qmp = await QmpClient.connect(qmpSocket, 10_000, died);
      const vm = new QemuVm(child, exited, qmp, spec.stateDir);
      if (spec.incomingState) await Promise.race([vm.#loadState(spec.incomingState), died]);
      return vm;
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      throw err;
    }
  }

  /**
   * Saves device state to `stateFile`. RAM is not in the stream
   * (x-ignore-shared): it is already in the shared RAM file. Leaves the VM
   * stopped.
   */
  async saveState(stateFile: string, timeoutMs = 30_000): Promise<void> {
    await this.qmp.execute('stop');
    await this.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    await this.qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(stateFile)}` });
    await this.#waitMigration(timeoutMs);
  }

  async #loadState(stateFile: string, timeoutMs = 30_000): Promise<void> {
    await this.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
    await this.qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(stateFile)}` });
    await this.#waitMigration(timeoutMs);
    // An incoming VM stays paused after the load.
    await this.qmp.execute('cont');
  }

  async #waitMigration(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = (await this.qmp.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
      if (r.status === 'completed') return;
      if (r.status === 'failed' || r.status === 'cancelled') throw new Error(`migration ${r.status}: ${r['error-desc'] ?? ''}`);
      if (Date.now() > deadline) throw new Error(`migration still ${r.status} after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }

  async pause(): Promise<void> {
    await this.qmp.execute('stop');
  }

  async unpause(): Promise<void> {
    await this.qmp.execute('cont');
  }

  /** SIGKILL and reap. Idempotent. */
  async kill(): Promise<void> {
    this.qmp.close();
    this.#child.kill('SIGKILL');
    await this.exited;
  }
}

function qemuArgs(spec: VmSpec, qmpSocket: string, consoleLog: string): string[] {
  const mem = `${spec.memoryMb}M`;
  const args = [
    '-accel', spec.accel,
    // -cpu max: qemu64 hangs on microvm under TCG.
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max',
    '-smp', '1',
    '-m', mem,
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-chardev', `file,id=con,path=${consoleLog}`, '-serial', 'chardev:con',
    '-kernel', spec.guest.kernel, '-initrd', spec.guest.initrd, '-append', cmdline(spec),
    '-drive', `id=root,file=${spec.disk},format=qcow2,if=none,discard=unmap`, '-device', 'virtio-blk-device,drive=root',
    '-drive', `id=fn,file=${spec.bundleDisk},format=raw,if=none,readonly=on`, '-device', 'virtio-blk-device,drive=fn',
    // envd's channel. QEMU is the server; the host dials it after boot or
    // restore, and the guest sees that as the port's host side opening.
    '-device', 'virtio-serial-device',
    '-chardev', `socket,id=envd,path=${path.join(spec.stateDir, 'envd.sock')},server=on,wait=off`,
    '-device', 'virtserialport,chardev=envd,name=org.snapfn.envd',
    '-qmp', `unix:${qmpSocket},server=on,wait=off`,
  ];
  if (spec.ram) {
    args.push('-object', `memory-backend-file,id=mem,size=${mem},mem-path=${spec.ram.file},share=${spec.ram.share ? 'on' : 'off'}`);
    args.push('-M', 'microvm,memory-backend=mem');
  } else {
    args.push('-M', 'microvm');
  }
  if (spec.nic) {
    args.push('-netdev', `tap,id=net0,ifname=${MICROVM_TAP},script=no,downscript=no`);
    args.push('-device', `virtio-net-device,netdev=net0,mac=${MICROVM_GUEST_MAC}`);
  }
  if (spec.incomingState) args.push('-incoming', 'defer');
  return args;
}

/**
 * virtio_net is a module loaded by the initramfs, after the kernel's own
 * `ip=` autoconfiguration has run, so runtime/guest/init reads the address
 * from these parameters and configures eth0 itself.
 */
function cmdline(spec: VmSpec): string {
  const parts = [CMDLINE];
  if (spec.accel === 'tcg') parts.push(tcgTscHint());
  if (spec.nic) parts.push(`snapfn.ip=${MICROVM_GUEST_IP}/${MICROVM_PREFIX}`, `snapfn.gw=${MICROVM_GATEWAY_IP}`);
  return parts.join(' ');
}

/**
 * Under TCG the guest's TSC is the host's, but the kernel's PIT calibration
 * of it fails when the host is busy ("tsc: Unable to calibrate against
 * PIT"; microvm has no HPET/PM timer to fall back on) and the boot then
 * stalls. Telling it the frequency skips the calibration.
 */
function tcgTscHint(): string {
  const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return m?.[1] ? `tsc_early_khz=${Math.round(Number(m[1]) * 1000)}` : '';
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
