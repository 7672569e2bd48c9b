import { GUEST_PATHS } from '../rootfs/base-rootfs.ts';

export interface SandboxSpecInput {
  rootfsDir: string;
  /** Host directory holding the envd socket, mounted at /run/snapfn. */
  socketDir: string;
  /** The function directory, mounted read-only at /fn. */
  bundleDir: string;
  /** The network slot's namespace; absent for `network: 'none'` (runsc then makes an empty one). */
  netnsPath?: string;
  /** The function's memoryMb; the cgroup limit adds the runtime's reserve and the body's room (sandboxMemoryLimitBytes). */
  memoryMb: number;
  /** SNAPFN_MAX_BODY_BYTES (default 6 MiB). */
  maxBodyBytes?: number;
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

const MiB = 1024 * 1024;

/**
 * What a restored sandbox holds before a handler allocates anything: the
 * Sentry (gVisor's kernel, a Go process), node and envd. A minimal handler's
 * sandbox measured 74 MiB at rest (runsc 0.0~20221219, ptrace); with the
 * function's memoryMb as the whole limit, `memoryMb: 64` could not even be
 * restored (runsc restore failed with EOF, 19 times in 22).
 */
export const RUNTIME_RESERVE_MB = 96;

/**
 * A request body is framed into envd and queued in the handler's Request
 * until read; V8 collects the buffers of earlier requests lazily. Room for
 * two copies of the largest body keeps one inside SNAPFN_MAX_BODY_BYTES from
 * ever being what kills a sandbox.
 */
export const BODY_COPIES = 2;

export const DEFAULT_MAX_BODY_BYTES = 6 * MiB;

/**
 * The sandbox's cgroup memory limit: `memoryMb` is what the function itself
 * may use, on top of the runtime's reserve and room for the request body.
 * A limit only (nothing is reserved on the host), so a large memoryMb on a
 * small machine costs nothing until the function really allocates it.
 */
export function sandboxMemoryLimitBytes(memoryMb: number, maxBodyBytes = DEFAULT_MAX_BODY_BYTES): number {
  return (memoryMb + RUNTIME_RESERVE_MB) * MiB + BODY_COPIES * maxBodyBytes;
}

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
        memory: { limit: sandboxMemoryLimitBytes(input.memoryMb, input.maxBodyBytes) },
        pids: { limit: input.pidsLimit },
      },
      ...(input.cgroupsPath ? { cgroupsPath: input.cgroupsPath } : {}),
    },
  };
}
