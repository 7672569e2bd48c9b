import { z } from 'zod';

/**
 * Request bodies snapfn sends to Firecracker's API, written from its
 * published description (src/firecracker/swagger/firecracker.yaml, API
 * 1.x) for the subset we use. Objects are strict because Firecracker's
 * own deserialisers deny unknown fields: a typo here would be a 400 there,
 * and is better caught before the request leaves. Only fields snapfn may
 * plausibly set are modelled; deprecated ones (vsock_id, mem_file_path on
 * load, enable_diff_snapshots, cpu_template) are left out on purpose.
 */

const Id = z.string().regex(/^[A-Za-z0-9_]{1,64}$/, 'Firecracker ids are 1-64 alphanumeric or underscore characters');
const HostPath = z.string().min(1);

const TokenBucket = z
  .object({
    size: z.number().int().nonnegative(),
    one_time_burst: z.number().int().nonnegative().optional(),
    /** Milliseconds to refill the bucket. */
    refill_time: z.number().int().nonnegative(),
  })
  .strict();

export const RateLimiter = z.object({ bandwidth: TokenBucket.optional(), ops: TokenBucket.optional() }).strict();

/** PUT /boot-source (pre-boot). */
export const BootSource = z
  .object({
    kernel_image_path: HostPath,
    boot_args: z.string().optional(),
    initrd_path: HostPath.optional(),
  })
  .strict();
export type BootSource = z.infer<typeof BootSource>;

/** PUT /drives/{drive_id} (pre-boot). snapfn only uses virtio-block drives (a host file), never vhost-user. */
export const Drive = z
  .object({
    drive_id: Id,
    is_root_device: z.boolean(),
    path_on_host: HostPath,
    is_read_only: z.boolean(),
    partuuid: z.string().optional(),
    cache_type: z.enum(['Unsafe', 'Writeback']).optional(),
    io_engine: z.enum(['Sync', 'Async']).optional(),
    rate_limiter: RateLimiter.optional(),
  })
  .strict();
export type Drive = z.infer<typeof Drive>;

/** PUT /network-interfaces/{iface_id} (pre-boot). */
export const NetworkInterface = z
  .object({
    iface_id: Id,
    /** The tap device on the host (in Firecracker's network namespace). */
    host_dev_name: z.string().min(1).max(15),
    guest_mac: z
      .string()
      .regex(/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/, 'guest_mac is six colon-separated hex octets')
      .optional(),
    mtu: z.number().int().min(68).max(65535).optional(),
    rx_rate_limiter: RateLimiter.optional(),
    tx_rate_limiter: RateLimiter.optional(),
  })
  .strict();
export type NetworkInterface = z.infer<typeof NetworkInterface>;

/** PUT /machine-config (pre-boot). */
export const MachineConfiguration = z
  .object({
    vcpu_count: z.number().int().min(1).max(32),
    mem_size_mib: z.number().int().positive(),
    smt: z.boolean().optional(),
    /** Needed for diff snapshots; costs a little on every guest write. */
    track_dirty_pages: z.boolean().optional(),
    huge_pages: z.enum(['None', 'Transparent', '2M']).optional(),
  })
  .strict()
  .refine((m) => !m.smt || m.vcpu_count === 1 || m.vcpu_count % 2 === 0, { message: 'with smt, vcpu_count must be 1 or even' })
  .refine((m) => m.huge_pages !== '2M' || m.mem_size_mib % 2 === 0, { message: 'with 2M huge pages, mem_size_mib must be even' });
export type MachineConfiguration = z.infer<typeof MachineConfiguration>;

/** PUT /vsock (pre-boot). Guest-initiated connections to port P arrive at `${uds_path}_${P}` on the host. */
export const Vsock = z
  .object({
    guest_cid: z.number().int().min(3),
    uds_path: HostPath,
  })
  .strict();
export type Vsock = z.infer<typeof Vsock>;

/** PUT /snapshot/create (the VM must be paused). */
export const SnapshotCreateParams = z
  .object({
    snapshot_path: HostPath,
    mem_file_path: HostPath,
    snapshot_type: z.enum(['Full', 'Diff']).optional(),
  })
  .strict();
export type SnapshotCreateParams = z.infer<typeof SnapshotCreateParams>;

export const MemoryBackend = z
  .object({
    /** Uffd: backend_path is the page server's socket; File: the memory file itself. */
    backend_type: z.enum(['File', 'Uffd']),
    backend_path: HostPath,
  })
  .strict();
export type MemoryBackend = z.infer<typeof MemoryBackend>;

/** PUT /snapshot/load (only on a fresh Firecracker process). */
export const SnapshotLoadParams = z
  .object({
    snapshot_path: HostPath,
    mem_backend: MemoryBackend,
    track_dirty_pages: z.boolean().optional(),
    resume_vm: z.boolean().optional(),
    /** Re-point a snapshotted interface at another tap device. */
    network_overrides: z.array(z.object({ iface_id: Id, host_dev_name: z.string().min(1).max(15) }).strict()).optional(),
    /** Re-point the vsock device at another host socket (each sandbox has its own). */
    vsock_override: z.object({ uds_path: HostPath }).strict().optional(),
    clock_realtime: z.boolean().optional(),
    huge_pages: z.enum(['Snapshot', 'None', 'Transparent', '2M']).optional(),
  })
  .strict()
  .refine((p) => p.huge_pages !== '2M' || p.mem_backend.backend_type === 'Uffd', { message: '2M huge pages need a Uffd memory backend' });
export type SnapshotLoadParams = z.infer<typeof SnapshotLoadParams>;

/** PATCH /vm. */
export const VmState = z.object({ state: z.enum(['Paused', 'Resumed']) }).strict();
export type VmState = z.infer<typeof VmState>;

/** PUT /actions. */
export const InstanceActionInfo = z.object({ action_type: z.enum(['FlushMetrics', 'InstanceStart', 'SendCtrlAltDel']) }).strict();
export type InstanceActionInfo = z.infer<typeof InstanceActionInfo>;

// ---- responses -------------------------------------------------------------

/** GET / */
export const InstanceInfo = z.object({
  app_name: z.string(),
  id: z.string(),
  state: z.enum(['Not started', 'Running', 'Paused']),
  vmm_version: z.string(),
});
export type InstanceInfo = z.infer<typeof InstanceInfo>;

/** Body of every 4xx/5xx. */
export const FaultBody = z.object({ fault_message: z.string() });
