/** ELF e_machine of each architecture kfarm builds for (DKMS's `arch` names). */
const MACHINES: Record<string, number> = {
  x86_64: 62,
  aarch64: 183,
  i686: 3,
  armv7l: 40,
  ppc64le: 21,
  s390x: 22,
  riscv64: 243,
};

/**
 * Why a file that a build handed back as `<name>.ko` is not a kernel module for `arch` (undefined when it is
 * one): a loadable module is an ELF relocatable object (ET_REL) for the kernel's machine.
 */
export function kernelModuleProblem(file: Buffer, arch: string): string | undefined {
  if (file.length < 64 || file.readUInt32BE(0) !== 0x7f454c46) return 'not an ELF file';
  const little = file[5] === 1;
  const type = little ? file.readUInt16LE(16) : file.readUInt16BE(16);
  const machine = little ? file.readUInt16LE(18) : file.readUInt16BE(18);
  if (type !== 1) return `an ELF file of type ${type}, not a relocatable object`;
  const expected = MACHINES[arch];
  if (expected !== undefined && machine !== expected) return `an ELF object for machine ${machine}, not ${arch}`;
  return undefined;
}
