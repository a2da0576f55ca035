import type { Readable, Writable } from 'node:stream';
import type { Session } from './labels.js';

/**
 * What kfarm does with a container engine, and nothing more. The Docker-API implementation
 * (docker-engine.ts) is the only code that knows dockerode; a second engine kind (Podman's own API, a
 * remote farm) implements these two interfaces again.
 *
 * Failure model, the same for every implementation: an engine that cannot be reached or does not answer in
 * time raises KfarmError `KFARM_ENGINE_UNAVAILABLE` (exit 3) from any call, not just the first one; an
 * abort by the caller's signal rethrows the signal's reason; anything else is the engine's own answer
 * (a missing image, a conflict) as a KfarmError with the engine's message.
 */
export interface Engine {
  /** Where the engine is, as a user would type it (`unix:///var/run/docker.sock`, `tcp://host:2376`). */
  readonly endpoint: string;
  /** The run this connection belongs to: every container it creates carries the session's labels. */
  readonly session: Session;

  /** Resolves when the engine answers within `timeoutMs`; KFARM_ENGINE_UNAVAILABLE otherwise. */
  ping(timeoutMs?: number): Promise<void>;

  /** An image's id and labels, or undefined when there is no image of that name. */
  image(ref: string): Promise<ImageInfo | undefined>;
  /** `docker import`: a root filesystem tarball becomes an image with these labels. */
  importImage(rootfs: Readable, ref: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void>;
  /** `docker commit` of a container kfarm started, with labels; resolves with the new image id. */
  commit(container: EngineContainer, ref: string, labels: Record<string, string>): Promise<string>;
  tagImage(source: string, ref: string): Promise<void>;
  /** Removes an image; a missing one is not an error. `force` also removes it while containers use it. */
  removeImage(ref: string, options?: { force?: boolean }): Promise<void>;

  /** A named volume's labels, or undefined when there is no such volume. */
  volume(name: string): Promise<VolumeInfo | undefined>;
  /** Creates a named volume with labels (an existing one of that name is kept as it is). */
  createVolume(name: string, labels: Record<string, string>): Promise<void>;
  /** Volumes carrying every one of these labels with these values. */
  volumes(labels: Record<string, string>): Promise<VolumeInfo[]>;
  /** Removes a named volume; a missing one is not an error. */
  removeVolume(name: string): Promise<void>;

  /** Creates and starts a labelled container; one that fails to start is removed before the error propagates. */
  start(spec: ContainerSpec, signal?: AbortSignal): Promise<EngineContainer>;
  /** Removes containers of kfarm runs that are gone (this host, dead pid); resolves with how many. */
  sweep(): Promise<number>;
  /** Removes a finished container in the background; `settle` waits for all such removals. */
  removeLater(container: EngineContainer): void;
  /** Waits for background removals, at most `timeoutMs`; resolves with how many did not finish in time. */
  settle(timeoutMs?: number): Promise<number>;
  /**
   * Removes every container of this session (on exit, Ctrl-C included), giving up after `timeoutMs`.
   * Resolves with how many could not be removed (the next run's sweep removes them).
   */
  removeSessionContainers(timeoutMs?: number): Promise<number>;
}

export interface ImageInfo {
  id: string;
  labels: Record<string, string>;
}

export interface VolumeInfo {
  name: string;
  labels: Record<string, string>;
}

/** A named volume in a container, at `target`. Volumes live in the engine: a remote engine works. */
export interface VolumeMount {
  volume: string;
  target: string;
  readOnly: boolean;
}

/** A container kfarm created and owns. */
export interface EngineContainer {
  readonly id: string;
  /** Runs a command; resolves with its exit code (from the engine's exec record, not the stream). */
  exec(cmd: string[], options?: ExecOptions): Promise<number>;
  /** Unpacks a tar stream at `path` inside the container. */
  putArchive(tar: Readable | Buffer, path: string, signal?: AbortSignal): Promise<void>;
  /** A tar stream of `path` inside the container. Its contents are untrusted. */
  getArchive(path: string, signal?: AbortSignal): Promise<Readable>;
  /** How many processes the kernel OOM-killed in the container's memory cgroup (exec'd ones included). */
  oomKills(): Promise<number>;
  /** Idempotent, bounded in time, and never uses the caller's (possibly aborted) signal. */
  remove(): Promise<void>;
}

export interface ExecOptions {
  /** Sent as the command's standard input (then end of file). */
  stdin?: Readable;
  env?: Record<string, string>;
  workdir?: string;
  user?: string;
  stdout?: Writable;
  stderr?: Writable;
  signal?: AbortSignal;
}

export interface ContainerSpec {
  image: string;
  /** Main process. Builds use `sleep <timeout>` so an orphaned container ends by itself. */
  cmd: string[];
  labels?: Record<string, string>;
  env?: Record<string, string>;
  workdir?: string;
  /** `none` for builds; only image preparation gets a network. */
  network: 'none' | 'bridge' | 'host';
  limits?: { memoryBytes?: number; pids?: number; cpus?: number };
  /** Builds drop every capability; image preparation (apt) needs the defaults. */
  hardened: boolean;
  /** A read-only root file system: the container writes only to its `tmpfs` mounts. */
  readOnlyRoot?: boolean;
  /** In-memory mounts (path → mount options), charged to the container's memory limit. */
  tmpfs?: Record<string, string>;
  volumes?: VolumeMount[];
}

/**
 * Time limits on engine calls (ms). A call past its limit means the engine is frozen or overloaded beyond
 * use: it raises KFARM_ENGINE_UNAVAILABLE. Streams (exec output, archives, image imports) have no limit of
 * their own; a run watches the engine with a ping (`heartbeat`) instead.
 */
export const EngineTimeouts = {
  /** Inspect, create, start, exec setup, tag, list. */
  call: 60_000,
  /** A commit writes a layer of a few hundred MB. */
  commit: 10 * 60_000,
  /** Removing containers at the end of a run, or after the engine was lost: then kfarm gives up and says so. */
  cleanup: 10_000,
  /** A run pings its engine this often… */
  heartbeatEvery: 10_000,
  /** …and stops (exit 3) when a ping is not answered within this. */
  heartbeat: 30_000,
} as const;
