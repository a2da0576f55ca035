/** Packaging a build's output: DKMS tarballs, .deb, .rpm, module signing. */
export { checkPackageOptions, packageOutput, type PackageOptions } from './package.js';
export { parseSourceDateEpoch, resolveSourceDateEpoch } from '../util/source-date-epoch.js';
export { loadSigningKey, parseModuleSignature, signModule, type ModuleSignature, type SigningKey } from './sign.js';
export { defaultPackageFormats, packageFormats, type KernelBuild, type PackageFormat } from './types.js';
