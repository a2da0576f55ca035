/** Limits on what a build may hand back (a module's Makefile is arbitrary code), shared by every reader of it. */
export const outputLimits = {
  moduleBytes: 256 * 1024 * 1024,
  symversBytes: 16 * 1024 * 1024,
  logBytes: 64 * 1024 * 1024,
  entries: 1000,
};
