// The layer rule of src/ (README, "Architecture"): a folder imports only folders below it. Checked in
// `npm test` (npm run lint), so an upward import fails the build.
const layers = {
  // The foundation: shared types and plain helpers. They import nothing else of kfarm.
  model: ['model', 'util'],
  util: ['util', 'model'],
  // The only door to container engines.
  engine: ['engine', 'model', 'util'],
  // Targets from the distribution's indexes; DKMS's rules and in-container evaluation.
  plan: ['plan', 'model', 'util'],
  dkms: ['dkms', 'engine', 'model', 'util'],
  // Builder images.
  images: ['images', 'engine', 'plan', 'model', 'util'],
  // The pipeline's stages: siblings, none imports another.
  farm: ['farm', 'images', 'dkms', 'engine', 'plan', 'model', 'util'],
  verify: ['verify', 'dkms', 'plan', 'model', 'util'],
  package: ['package', 'images', 'dkms', 'engine', 'plan', 'model', 'util'],
  report: ['report', 'dkms', 'model', 'util'],
  // Repositories from packaged outputs.
  publish: ['publish', 'package', 'plan', 'model', 'util'],
  // build → verify → package → reports.
  pipeline: ['pipeline', 'farm', 'verify', 'package', 'report', 'dkms', 'plan', 'model', 'util'],
  cli: [
    'cli',
    'pipeline',
    'publish',
    'farm',
    'verify',
    'package',
    'report',
    'images',
    'dkms',
    'engine',
    'plan',
    'model',
    'util',
  ],
};

module.exports = {
  forbidden: [
    ...Object.entries(layers).map(([layer, allowed]) => ({
      name: `layer-${layer}`,
      comment: `src/${layer}/ may import only ${allowed.map((l) => `src/${l}/`).join(', ')}`,
      severity: 'error',
      from: { path: `^src/${layer}/` },
      to: { path: '^src/', pathNot: `^src/(${allowed.join('|')})/` },
    })),
    {
      name: 'no-circular',
      comment: 'import cycles hide which module depends on which',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'dockerode-only-in-engine',
      comment: 'the Docker-API engine implementation is the only user of dockerode',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/engine/docker-' },
      to: { path: 'node_modules/(dockerode|docker-modem)/' },
    },
    {
      name: 'no-dev-dependencies-in-src',
      comment: 'the shipped code must run with the runtime dependencies alone',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
