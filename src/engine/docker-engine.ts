import Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { DockerContainer } from './docker-container.js';
import type { ContainerSpec, Engine, EngineContainer, ImageInfo, VolumeInfo } from './engine.js';
import { EngineTimeouts } from './engine.js';
import { engineCall, engineUnavailable, isNotFound } from './engine-errors.js';
import { Label, type Session } from './labels.js';
import { KfarmError } from '../model/errors.js';

/** Where dockerode will connect, described the way a user would type it. */
export function engineEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return env['DOCKER_HOST'] && env['DOCKER_HOST'] !== '' ? env['DOCKER_HOST'] : 'unix:///var/run/docker.sock';
}

/**
 * Connects to the engine named by DOCKER_HOST (dockerode reads it: unix, tcp, ssh) or the default socket, and
 * proves it answers. Docker and Podman's Docker-compatible socket both speak this API.
 */
export async function connectEngine(
  session: Session,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<Engine> {
  const engine = new DockerEngine(new Docker(), session, engineEndpoint());
  await engine.ping(options.timeoutMs ?? 10_000, options.signal);
  return engine;
}

/** The Docker-API implementation of Engine: the only user of dockerode in kfarm. */
export class DockerEngine implements Engine {
  readonly #removals = new Set<Promise<void>>();

  constructor(
    readonly docker: Docker,
    readonly session: Session,
    readonly endpoint: string,
  ) {}

  async ping(timeoutMs: number = EngineTimeouts.heartbeat, signal?: AbortSignal): Promise<void> {
    await this.#call('a ping', (abortSignal) => pingWith(this.docker, abortSignal), {
      timeoutMs,
      signal,
    }).catch((error: unknown) => {
      // Any failure to answer a ping means there is no usable engine, whatever the engine said.
      if (error instanceof KfarmError && error.code === 'KFARM_ENGINE_ERROR') {
        const problem = `the container engine at ${this.endpoint} does not answer pings (${error.message})`;
        throw engineUnavailable(problem, error);
      }
      throw error;
    });
  }

  async image(ref: string): Promise<ImageInfo | undefined> {
    try {
      const info = await this.#call(`inspecting image ${ref}`, (abortSignal) =>
        this.docker.getImage(ref).inspect({ abortSignal } as Docker.ImageInspectOptions),
      );
      return { id: info.Id, labels: info.Config?.Labels ?? {} };
    } catch (error) {
      if (isNotFound((error as { cause?: unknown }).cause)) return undefined;
      throw error;
    }
  }

  async importImage(
    rootfs: Readable,
    ref: string,
    labels: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<void> {
    const [repo, tag] = splitRef(ref);
    const changes = [...labelChanges(labels), 'CMD ["/bin/bash"]'];
    // An import lasts as long as the root filesystem takes to arrive: the caller's signal bounds it, not a timer.
    await this.#call(
      `importing ${ref}`,
      async (abortSignal) => {
        const stream = (await this.docker.importImage(rootfs, { repo, tag, changes, abortSignal })) as unknown;
        await followProgress(this.docker, stream as NodeJS.ReadableStream);
      },
      { signal, timeoutMs: null },
    );
  }

  /**
   * dockerode sends commit options as query parameters, so labels go in as Dockerfile `LABEL` changes; the
   * container's own session labels are blanked so the image does not pass them on to every container later
   * created from it.
   */
  async commit(container: EngineContainer, ref: string, labels: Record<string, string>): Promise<string> {
    const [repo, tag] = splitRef(ref);
    const blank = Object.fromEntries([...Object.keys(this.session.labels), Label.target].map((k) => [k, '']));
    const changes = [...labelChanges({ ...blank, ...labels }), 'CMD ["/bin/bash"]'];
    const handle = this.#own(container).handle;
    const result = await this.#call(
      `committing ${ref}`,
      (abortSignal) => handle.commit({ repo, tag, changes, abortSignal }) as Promise<{ Id: string }>,
      { timeoutMs: EngineTimeouts.commit },
    );
    return result.Id;
  }

  async tagImage(source: string, ref: string): Promise<void> {
    const [repo, tag] = splitRef(ref);
    await this.#call(`tagging ${ref}`, (abortSignal) => this.docker.getImage(source).tag({ repo, tag, abortSignal }));
  }

  async removeImage(ref: string, options: { force?: boolean } = {}): Promise<void> {
    try {
      await this.#call(`removing image ${ref}`, (abortSignal) =>
        this.docker
          .getImage(ref)
          .remove({ force: options.force === true, noprune: options.force !== true, abortSignal }),
      );
    } catch (error) {
      if (!isNotFound((error as { cause?: unknown }).cause)) throw error;
    }
  }

  async volume(name: string): Promise<VolumeInfo | undefined> {
    try {
      const info = (await this.#call(`inspecting volume ${name}`, (abortSignal) =>
        this.docker.getVolume(name).inspect({ abortSignal }),
      )) as { Name: string; Labels?: Record<string, string> | null };
      return { name: info.Name, labels: info.Labels ?? {} };
    } catch (error) {
      if (isNotFound((error as { cause?: unknown }).cause)) return undefined;
      throw error;
    }
  }

  async createVolume(name: string, labels: Record<string, string>): Promise<void> {
    await this.#call(`creating volume ${name}`, (abortSignal) =>
      this.docker.createVolume({ Name: name, Labels: labels, abortSignal }),
    );
  }

  async volumes(labels: Record<string, string>): Promise<VolumeInfo[]> {
    const label = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
    const answer = (await this.#call('listing volumes', (abortSignal) =>
      this.docker.listVolumes({ filters: { label }, abortSignal }),
    )) as { Volumes?: { Name: string; Labels?: Record<string, string> | null }[] | null };
    return (answer.Volumes ?? []).map((v) => ({ name: v.Name, labels: v.Labels ?? {} }));
  }

  async removeVolume(name: string): Promise<void> {
    try {
      await this.#call(`removing volume ${name}`, (abortSignal) =>
        this.docker.getVolume(name).remove({ force: true, abortSignal }),
      );
    } catch (error) {
      if (!isNotFound((error as { cause?: unknown }).cause)) throw error;
    }
  }

  async start(spec: ContainerSpec, signal?: AbortSignal): Promise<EngineContainer> {
    const handle = await this.#call(
      'creating a container',
      (abortSignal) =>
        this.docker.createContainer({
          ...createOptions(spec, this.session),
          abortSignal,
        }),
      { signal },
    );
    const container = new DockerContainer(this.docker, handle, this.endpoint);
    try {
      await this.#call('starting a container', (abortSignal) => handle.start({ abortSignal }), { signal });
    } catch (error) {
      await container.remove().catch(() => undefined);
      throw error;
    }
    return container;
  }

  /** Containers of this host's dead runs (SIGKILL, reboot): their pid no longer runs. Live runs are left alone. */
  async sweep(): Promise<number> {
    const list = await this.#list([Label.session]);
    const dead = list.filter((info) => {
      const labels = info.Labels ?? {};
      if (labels[Label.host] !== this.session.labels[Label.host] || labels[Label.session] === this.session.id)
        return false;
      const pid = Number(labels[Label.pid]);
      return !(Number.isInteger(pid) && pid > 0 && pidAlive(pid));
    });
    for (const info of dead) await this.#container(info.Id).remove();
    return dead.length;
  }

  removeLater(container: EngineContainer): void {
    const removal = container.remove().catch(() => undefined);
    this.#removals.add(removal);
    void removal.finally(() => this.#removals.delete(removal));
  }

  async settle(timeoutMs: number = EngineTimeouts.cleanup): Promise<number> {
    const pending = [...this.#removals];
    await withinTime(Promise.all(pending), timeoutMs);
    return this.#removals.size;
  }

  async removeSessionContainers(timeoutMs: number = EngineTimeouts.cleanup): Promise<number> {
    try {
      const list = await this.#list([`${Label.session}=${this.session.id}`], timeoutMs);
      const removals = list.map((info) =>
        this.#container(info.Id)
          .remove()
          .then(
            () => 0,
            () => 1,
          ),
      );
      const failed = await withinTime(Promise.all(removals), timeoutMs);
      return failed === undefined ? list.length : failed.reduce((a: number, b: number) => a + b, 0);
    } catch {
      return -1;
    }
  }

  #list(label: string[], timeoutMs: number = EngineTimeouts.call): Promise<Docker.ContainerInfo[]> {
    return this.#call(
      'listing containers',
      (abortSignal) => this.docker.listContainers({ all: true, filters: { label }, abortSignal }),
      {
        timeoutMs,
      },
    );
  }

  #container(id: string): DockerContainer {
    return new DockerContainer(this.docker, this.docker.getContainer(id), this.endpoint);
  }

  #own(container: EngineContainer): DockerContainer {
    if (!(container instanceof DockerContainer))
      throw new KfarmError('KFARM_INTERNAL', 'a container of another engine');
    return container;
  }

  #call<T>(
    what: string,
    request: (signal: AbortSignal) => Promise<T>,
    options: { timeoutMs?: number | null; signal?: AbortSignal | undefined } = {},
  ): Promise<T> {
    // null: a call that lasts as long as its input (an image import), bounded by the caller's signal only.
    const timeoutMs = options.timeoutMs === null ? undefined : (options.timeoutMs ?? EngineTimeouts.call);
    return engineCall(this.endpoint, what, request, {
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }
}

function createOptions(spec: ContainerSpec, session: Session): Docker.ContainerCreateOptions {
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
  if (spec.readOnlyRoot) hostConfig.ReadonlyRootfs = true;
  if (spec.volumes?.length)
    hostConfig.Mounts = spec.volumes.map((v) => ({
      Type: 'volume',
      Source: v.volume,
      Target: v.target,
      ReadOnly: v.readOnly,
    }));
  return {
    Image: spec.image,
    Cmd: spec.cmd,
    Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
    WorkingDir: spec.workdir,
    Labels: { ...session.labels, ...spec.labels },
    HostConfig: hostConfig,
  };
}

/** dockerode's ping takes an abortSignal like every call, but its types do not say so. */
function pingWith(docker: Docker, abortSignal: AbortSignal): Promise<unknown> {
  const ping = docker.ping.bind(docker) as unknown as (options: { abortSignal: AbortSignal }) => Promise<unknown>;
  return ping({ abortSignal });
}

function labelChanges(labels: Record<string, string>): string[] {
  return Object.entries(labels).map(([k, v]) => `LABEL ${k}=${JSON.stringify(v)}`);
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

/** The promise's value, or undefined once `ms` have passed (the work goes on; nobody waits for it). */
async function withinTime<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms).unref()));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Engine progress streams report failure as an `error` event inside a 200 response: check every event. */
async function followProgress(docker: Docker, stream: NodeJS.ReadableStream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null) => (error ? reject(error) : resolve()),
      (event: { error?: string; errorDetail?: { message?: string } }) => {
        if (event.error || event.errorDetail) {
          reject(new KfarmError('KFARM_ENGINE_ERROR', event.errorDetail?.message ?? event.error ?? 'import failed'));
        }
      },
    );
  });
}
