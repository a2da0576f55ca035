import { hostname } from 'node:os';

/** Label keys every kfarm container and image carries; `kfarm.session` is the sweep key. */
export const Label = {
  session: 'kfarm.session',
  pid: 'kfarm.pid',
  host: 'kfarm.host',
  target: 'kfarm.target',
  role: 'kfarm.role',
  distro: 'kfarm.distro',
  release: 'kfarm.release',
  recipe: 'kfarm.recipe',
} as const;

export interface Session {
  readonly id: string;
  readonly labels: Record<string, string>;
}

export function newSession(id: string): Session {
  return {
    id,
    labels: { [Label.session]: id, [Label.pid]: String(process.pid), [Label.host]: hostname() },
  };
}
