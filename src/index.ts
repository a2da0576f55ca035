// kfarm's library API. `runPipeline` is what `kfarm build` runs; the stages are exported on their own too.
export {
  checkPipelineInputs,
  pipelineExitCode,
  runPipeline,
  type PipelineOptions,
  type PipelineRun,
} from './pipeline/index.js';
export { runFarm, farmConcurrency, type FarmOptions, type FarmRun } from './farm/run.js';
export { ResultCache } from './farm/cache.js';
export {
  verifyReport,
  verifyTargets,
  withVerifyResults,
  verifyLogPath,
  DEFAULT_VERIFY_TIMEOUT_MS,
  type VerifiedReport,
  type VerifyEvent,
  type VerifyOptions,
} from './verify/index.js';
export * from './package/index.js';
export { publish, type PublishOptions, type PublishResult } from './publish/index.js';
export { writeReports, type WriteReportsOptions, type WrittenReports } from './report/write-reports.js';
export { renderJunit } from './report/junit.js';
export { renderSummary } from './report/markdown.js';
export { githubAnnotations } from './report/github.js';
export { resolvePlan, resolveTargets, releaseSources, selectKernels, type ResolveOptions } from './plan/resolve.js';
export { discoverKernels, discoverReleaseIndex, type ReleaseIndex } from './plan/debian-index.js';
export { loadMatrix, parseMatrix, type Matrix, type MatrixRelease } from './plan/matrix.js';
export { parseTargetId, formatTargetId } from './plan/targets.js';
export { parseModinfo, readModinfo, vermagicRelease } from './dkms/modinfo.js';
export type { DkmsPlan, ModuleRecord } from './dkms/plan.js';
export { connectEngine, newSession, type Engine, type EngineContainer, type Session } from './engine/index.js';
export type { FarmEvents, ImageEvents, Phase } from './model/events.js';
export type { KnownFailing } from './model/known-failing.js';
export { readJsonReport, writeJsonReport, REPORT_SCHEMA_VERSION, type FarmReport } from './model/report.js';
export type { FirstError, KernelTarget, Target, TargetResult, TargetStatus, VerifyResult } from './model/result.js';
export { ExitCode, KfarmError, isKfarmError, type KfarmErrorCode } from './model/errors.js';
