import { describe, expect, it } from 'vitest';
import { splitDepends } from '../../src/plan/deb-source.js';
import { providedNames } from '../../src/plan/debian-lookup.js';

describe('a DKMS package’s Depends as build dependencies', () => {
  it("bookworm's zfs-dkms: first alternatives, no versions, no :any, without dkms", () => {
    const depends =
      'dkms (>> 2.1.1.2-5), file, libc6-dev | libc-dev, lsb-release, python3-distutils | libpython3-stdlib (<< 3.6.4), ' +
      'debconf (>= 0.5) | debconf-2.0, perl:any';
    expect(splitDepends(depends).buildDeps).toEqual([
      'file',
      'libc6-dev',
      'lsb-release',
      'python3-distutils',
      'debconf',
      'perl',
    ]);
  });

  it("trixie's iptables-netflow-dkms", () => {
    expect(splitDepends('dkms (>= 3.0.11), libc6-dev, libxtables-dev, pkgconf, libc6 (>= 2.3.4)').buildDeps).toEqual([
      'libc6-dev',
      'libxtables-dev',
      'pkgconf',
      'libc6',
    ]);
    expect(splitDepends('')).toEqual({ buildDeps: [], moduleDeps: [] });
  });

  it("trixie's nvidia-fs-dkms: a DKMS module dependency is not a build dependency", () => {
    const depends =
      'nvidia-kernel-dkms (>= 550) | nvidia-open-kernel-dkms (>= 550) | nvidia-kernel-dkms-any (>= 550) | ' +
      'nvidia-open-kernel-dkms-any (>= 550), dkms (>= 3.0.11)';
    expect(splitDepends(depends)).toEqual({ buildDeps: [], moduleDeps: ['nvidia-kernel-dkms'] });
  });

  it('Provides names, versioned or not', () => {
    expect(providedNames('pkg-config (= 1.8.1-4), pkgconf-bin')).toEqual(['pkg-config', 'pkgconf-bin']);
    expect(providedNames(undefined)).toEqual([]);
  });
});
