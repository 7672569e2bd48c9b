import type { FunctionConfig } from '../schemas/function-config.ts';
import type { InvocationOutcome, WireRequest } from '../schemas/invocation.ts';
import type { RootfsFlavor } from './rootfs/base-rootfs.ts';

/** What a template is built from: the prepared function directory (see template/function-source.ts). */
export interface TemplateSource {
  functionName: string;
  /** Mounted read-only at /fn: the upload with its node_modules and assets, plus `.snapfn/function.json`. */
  sourceDir: string;
  /** hashSourceDir(sourceDir): part of the template id. */
  sourceHash: string;
  network: FunctionConfig['network'];
  /** Root filesystem flavor (default `base`); it is part of the template id through the rootfs hash. */
  rootfs?: RootfsFlavor;
}

export type ProgressFn = (step: string, detail?: Record<string, unknown>) => void;

/** A checkpointed, warmed sandbox that can be resumed any number of times. */
export interface Template {
  /** Content hash of bundle, base root filesystem, envd, driver version and network mode. */
  readonly id: string;
  readonly driver: string;
  /** Directory that holds everything the driver needs to resume it. */
  readonly dir: string;
  /** The handler's own `export const config`, as envd read it inside the sandbox (unvalidated). */
  readonly handlerConfig: unknown;
  readonly buildMs: number;
  readonly imageBytes: number;
  /** The flavor it was built on (absent: `base`); a restore must use the same root filesystem. */
  readonly rootfs?: RootfsFlavor;
}

export interface ResumeOptions {
  memoryMb: number;
  network: FunctionConfig['network'];
  /** Spans for the phases of a resume hang off the caller's active context. */
  signal?: AbortSignal;
}

export interface InvokeOptions {
  timeoutMs: number;
  env: Record<string, string>;
  invocationId: string;
  /** For the handler's context (Lambda's functionName, memoryLimitInMB). */
  functionName?: string;
  version?: number;
  memoryMb?: number;
  /** Answer as soon as the response head exists, with the body as a stream (a StreamingOutcome). */
  stream?: boolean;
  /** Response body limit (SNAPFN_MAX_RESPONSE_BYTES); past it the invocation fails with response_too_large. */
  maxResponseBytes?: number;
}

/** One running sandbox, resumed from a template. Owned by exactly one caller at a time. */
export interface Sandbox {
  readonly id: string;
  readonly templateId: string;
  /** True once the sandbox has died (crash, OOM kill, timeout kill, destroy). */
  readonly dead: boolean;
  /**
   * Runs one request through envd. Handler failures come back as `{ ok: false }`;
   * only a timeout or a dead sandbox also marks the sandbox `dead`.
   */
  invoke(request: WireRequest, options: InvokeOptions): Promise<InvocationOutcome>;
  /**
   * The rehearsal after a restore (every driver alike, lifecycle/envd-sandbox.ts):
   * envd's request path once, with its stand-in handler, never the user's.
   * Right after a restore the first request pays ~20 ms of page faults; the
   * warm pool does this off the request path. (Priming, before a checkpoint,
   * is the template builder's, not part of this interface.)
   */
  warmup(): Promise<void>;
  /**
   * Resolves once the work the handler left running with ctx.waitUntil has
   * settled (bounded by its timeout): only then may the sandbox be paused
   * or destroyed. Absent: nothing ever keeps running after a response.
   */
  settled?(): Promise<void>;
  /** Freeze the sandbox so it costs no CPU until `unpause` (keepWarm). */
  pause(): Promise<void>;
  unpause(): Promise<void>;
  /** Kill it and release every resource (network slot, state dir). Idempotent. */
  destroy(): Promise<void>;
}

export interface SandboxDriver {
  readonly name: string;
  /** How sandboxes are isolated on this host (gVisor: ptrace or kvm; QEMU: kvm or tcg). */
  readonly platform: string;
  /** Part of every template hash: bump it when the driver's snapshot format changes. */
  readonly version: string;
  /** Boot from scratch, warm, checkpoint. Never rebuilds a template whose hash already exists. */
  buildTemplate(source: TemplateSource, onProgress?: ProgressFn): Promise<Template>;
  /** Find an already built template by id (after a restart). */
  loadTemplate(id: string): Promise<Template | undefined>;
  resume(template: Template, options: ResumeOptions): Promise<Sandbox>;
  /** Boot the function's sandbox without a snapshot (for the benchmark's cold-boot column). */
  coldBoot(source: TemplateSource, options: ResumeOptions): Promise<Sandbox>;
  /** Number of sandboxes alive right now (for metrics and leak checks). */
  liveSandboxes(): number;
  close(): Promise<void>;
}
