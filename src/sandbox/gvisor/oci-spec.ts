import { GUEST_PATHS } from '../rootfs/base-rootfs.ts';

export interface SandboxSpecInput {
  rootfsDir: string;
  /** Host directory holding the envd socket, mounted at /run/snapfn. */
  socketDir: string;
  /** The function directory, mounted read-only at /fn. */
  bundleDir: string;
  /** The network slot's namespace; absent for `network: 'none'` (runsc then makes an empty one). */
  netnsPath?: string;
  memoryMb: number;
  pidsLimit: number;
  hostname: string;
  cgroupsPath?: string;
}

/**
 * `--max-semi-space-size=1` keeps V8's young generation tiny, which roughly
 * halves the checkpoint image and so the restore time (~10 ms per MB).
 * `--experimental-detect-module`: a `.js` file with `import`/`export` and no
 * `"type": "module"` (how most Workers code is written) loads as ESM, as it
 * does by default from Node 22.
 */
export const NODE_FLAGS = ['--max-semi-space-size=1', '--experimental-detect-module'];

/** The OCI runtime spec for one sandbox (build, cold boot or restore). */
export function sandboxSpec(input: SandboxSpecInput): Record<string, unknown> {
  return {
    ociVersion: '1.0.0',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [GUEST_PATHS.node, ...NODE_FLAGS, GUEST_PATHS.envd],
      env: ['PATH=/usr/bin:/bin', 'HOME=/root', 'NODE_ENV=production', `SNAPFN_ENVD_SOCKET=${GUEST_PATHS.socketDir}/envd.sock`],
      cwd: '/tmp',
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 }],
      noNewPrivileges: true,
    },
    root: { path: input.rootfsDir, readonly: false },
    hostname: input.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: GUEST_PATHS.socketDir, type: 'bind', source: input.socketDir, options: ['rbind', 'rw'] },
      { destination: GUEST_PATHS.bundleDir, type: 'bind', source: input.bundleDir, options: ['rbind', 'ro'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, input.netnsPath ? { type: 'network', path: input.netnsPath } : { type: 'network' }],
      resources: {
        memory: { limit: input.memoryMb * 1024 * 1024 },
        pids: { limit: input.pidsLimit },
      },
      ...(input.cgroupsPath ? { cgroupsPath: input.cgroupsPath } : {}),
    },
  };
}
