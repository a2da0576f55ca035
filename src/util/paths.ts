import { fileURLToPath } from 'node:url';

/** Top-level `images/` of the kfarm package: image recipes and the scripts kfarm runs inside builders. */
export const imagesDir = fileURLToPath(new URL('../../images/', import.meta.url));

/** The kfarm package's root directory (package.json, matrix/, images/). */
export const packageDir = fileURLToPath(new URL('../../', import.meta.url));
