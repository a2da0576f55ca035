import Docker from 'dockerode';
import { KfarmError } from '../errors.js';

/** Where dockerode will connect, described the way a user would type it. */
export function engineEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return env['DOCKER_HOST'] && env['DOCKER_HOST'] !== '' ? env['DOCKER_HOST'] : 'unix:///var/run/docker.sock';
}

/**
 * Connects to the engine named by DOCKER_HOST (dockerode reads it) or the default socket, and proves it
 * answers. An engine that does not answer is exit code 3 with one line saying how to get one.
 */
export async function connectEngine(options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Docker> {
  const docker = new Docker();
  const endpoint = engineEndpoint();
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 10_000);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    await (docker.ping as unknown as (o: { abortSignal: AbortSignal }) => Promise<unknown>)({ abortSignal: signal });
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
    throw new KfarmError(
      'KFARM_ENGINE_UNAVAILABLE',
      `cannot reach the container engine at ${endpoint} (${reason}): start one with ` +
        '`sudo scripts/setup-host.sh` (or `sudo dockerd &`), or point DOCKER_HOST at a running engine',
      { cause },
    );
  }
  return docker;
}
