import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { connectEngine, engineEndpoint } from './connect.js';
import { EngineContainer, isNotFound } from './container.js';
import { Label, type Session } from './labels.js';

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
  /** In-memory mounts (path → mount options), charged to the container's memory limit. */
  tmpfs?: Record<string, string>;
}

/**
 * The only door to the container engine. Everything else in kfarm talks to this class, so a remote engine
 * (DOCKER_HOST) or a Docker-compatible one (Podman's socket) works wherever dockerode does.
 */
export class Engine {
  readonly #removals = new Set<Promise<void>>();

  constructor(
    readonly docker: Docker,
    readonly session: Session,
    readonly endpoint: string,
  ) {}

  static async connect(session: Session, options: { signal?: AbortSignal } = {}): Promise<Engine> {
    const docker = await connectEngine(options);
    return new Engine(docker, session, engineEndpoint());
  }

  async imageLabels(ref: string): Promise<Record<string, string> | undefined> {
    try {
      const info = await this.docker.getImage(ref).inspect();
      return info.Config?.Labels ?? {};
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async imageId(ref: string): Promise<string | undefined> {
    try {
      return (await this.docker.getImage(ref).inspect()).Id;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** `docker import`: a root filesystem tarball becomes an image with the given labels. */
  async importImage(
    rootfs: Readable,
    ref: string,
    labels: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<void> {
    const [repo, tag] = splitRef(ref);
    const changes = Object.entries(labels).map(([k, v]) => `LABEL ${k}=${JSON.stringify(v)}`);
    changes.push('CMD ["/bin/bash"]');
    const stream = (await this.docker.importImage(rootfs, {
      repo,
      tag,
      changes,
      abortSignal: signal,
    } as never)) as unknown as NodeJS.ReadableStream;
    await followEngineProgress(this.docker, stream);
  }

  /**
   * `docker commit` with labels. dockerode sends commit options as query parameters, so labels go in as
   * Dockerfile `LABEL` changes; the preparing container's own session labels are blanked so the image does
   * not pass them on to every container later created from it.
   */
  async commit(container: EngineContainer, ref: string, labels: Record<string, string>): Promise<string> {
    const [repo, tag] = splitRef(ref);
    const blank = Object.fromEntries(
      Object.keys(this.session.labels)
        .concat(Label.target)
        .map((k) => [k, '']),
    );
    const changes = Object.entries({ ...blank, ...labels }).map(([k, v]) => `LABEL ${k}=${JSON.stringify(v)}`);
    changes.push('CMD ["/bin/bash"]');
    const result = (await container.handle.commit({ repo, tag, changes } as never)) as unknown as { Id: string };
    return result.Id;
  }

  /** Creates and starts a labelled container; one that fails to start is removed before the error propagates. */
  async start(spec: ContainerSpec, signal?: AbortSignal): Promise<EngineContainer> {
    const hostConfig: Docker.HostConfig = { NetworkMode: spec.network, Init: true };
    if (spec.hardened) {
      hostConfig.CapDrop = ['ALL'];
      hostConfig.SecurityOpt = ['no-new-privileges'];
    }
    if (spec.limits?.memoryBytes) {
      hostConfig.Memory = spec.limits.memoryBytes;
      hostConfig.MemorySwap = spec.limits.memoryBytes;
    }
    if (spec.limits?.pids) hostConfig.PidsLimit = spec.limits.pids;
    if (spec.limits?.cpus) hostConfig.NanoCpus = Math.round(spec.limits.cpus * 1e9);
    if (spec.tmpfs) hostConfig.Tmpfs = spec.tmpfs;
    const handle = await this.docker.createContainer({
      Image: spec.image,
      Cmd: spec.cmd,
      Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
      WorkingDir: spec.workdir,
      Labels: { ...this.session.labels, ...spec.labels },
      HostConfig: hostConfig,
      abortSignal: signal,
    } as Docker.ContainerCreateOptions);
    const container = new EngineContainer(this.docker, handle);
    try {
      await handle.start();
    } catch (error) {
      await container.remove();
      throw error;
    }
    return container;
  }

  /**
   * Removes containers left by kfarm runs that are gone (killed with SIGKILL, machine rebooted): those of
   * this host whose pid no longer runs. Live runs, this one included, are left alone.
   */
  async sweep(): Promise<number> {
    const list = await this.docker.listContainers({ all: true, filters: { label: [Label.session] } });
    let removed = 0;
    for (const info of list) {
      const labels = info.Labels ?? {};
      if (labels[Label.host] !== this.session.labels[Label.host] || labels[Label.session] === this.session.id) continue;
      const pid = Number(labels[Label.pid]);
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) continue;
      await new EngineContainer(this.docker, this.docker.getContainer(info.Id)).remove();
      removed++;
    }
    return removed;
  }

  /**
   * Removes a finished container in the background: removal (kill, unmount, delete the writable layer)
   * takes a fraction of a second that the next build need not wait for. `settle()` waits for all of them.
   */
  removeLater(container: EngineContainer): void {
    const removal = container.remove().catch(() => undefined);
    this.#removals.add(removal);
    void removal.finally(() => this.#removals.delete(removal));
  }

  async settle(): Promise<void> {
    await Promise.all([...this.#removals]);
  }

  /** Removes every container of this session (on exit, including Ctrl-C). */
  async removeSessionContainers(): Promise<void> {
    const list = await this.docker.listContainers({
      all: true,
      filters: { label: [`${Label.session}=${this.session.id}`] },
    });
    await Promise.all(list.map((info) => new EngineContainer(this.docker, this.docker.getContainer(info.Id)).remove()));
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function splitRef(ref: string): [string, string] {
  const colon = ref.lastIndexOf(':');
  return colon > ref.lastIndexOf('/') ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];
}

/** Engine progress streams report failure as an `error` event inside a 200 response: check every event. */
async function followEngineProgress(docker: Docker, stream: NodeJS.ReadableStream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null) => (error ? reject(error) : resolve()),
      (event: { error?: string; errorDetail?: { message?: string } }) => {
        if (event.error || event.errorDetail) reject(new Error(event.errorDetail?.message ?? event.error));
      },
    );
  });
}
