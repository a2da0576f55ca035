import { describe, expect, it } from 'vitest';
import { compareDebianVersions } from '../../src/util/debian-version.js';

// Each row: a < b. Sources: deb-version(7), dpkg's own test suite, and versions seen in the Debian archive.
const ascending: [string, string][] = [
  ['1.0~rc1', '1.0'],
  ['1.0~~', '1.0~'],
  ['1.0~', '1.0'],
  ['1.0', '1.0a'],
  ['1.0a', '1.0+'],
  ['1.0+', '1.0.'],
  ['1.0', '1.0.1'],
  ['1.0-1', '1.0-1+deb12u1'],
  ['1.0-1', '1.0-2'],
  ['1.0-9', '1.0-10'],
  ['1.2', '1.10'],
  ['2.0', '1:0.1'],
  ['1:1.0', '2:0.1'],
  ['9:1.0', '10:1.0'],
  ['6.1.158-1', '6.1.164-1'],
  ['6.1.170-3', '6.1.176-1'],
  ['6.12.94-1', '6.12.117-1'],
  ['6.12.115-1', '6.12.115-2'],
  ['6.12.117-1~deb12u1', '6.12.117-1'],
  ['6.12.95-1~bpo12+1', '6.12.95-1'],
  ['7.2.11-1~bpo13+1', '7.2.12-1~bpo13+1'],
  ['6.1.0-47', '6.1.0-50'],
  ['6.1.0-0.deb11.52', '6.1.0-47'],
  ['a', 'b'],
  ['Z', 'a'],
  ['1.0-a', '1.0-.'],
  ['', '0.1'],
];

const equal: [string, string][] = [
  ['1.0', '1.0'],
  ['0:1.0', '1.0'],
  ['1.0', '1.0-0'],
  ['1.001', '1.1'],
  ['6.1.176-1', '6.1.176-01'],
];

describe('compareDebianVersions', () => {
  it.each(ascending)('%s < %s', (a, b) => {
    expect(compareDebianVersions(a, b)).toBe(-1);
    expect(compareDebianVersions(b, a)).toBe(1);
  });

  it.each(equal)('%s = %s', (a, b) => {
    expect(compareDebianVersions(a, b)).toBe(0);
    expect(compareDebianVersions(b, a)).toBe(0);
  });

  it('sorts kernel header versions the way apt would pick them', () => {
    const versions = ['6.12.117-1', '6.12.94-1', '6.12.117-1~deb12u1', '6.12.107-1', '7.2.11-1~bpo13+1', '6.12.115-2'];
    expect([...versions].sort(compareDebianVersions)).toEqual([
      '6.12.94-1',
      '6.12.107-1',
      '6.12.115-2',
      '6.12.117-1~deb12u1',
      '6.12.117-1',
      '7.2.11-1~bpo13+1',
    ]);
  });
});
