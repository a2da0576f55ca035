export {
  checkPipelineInputs,
  pipelineExitCode,
  runPipeline,
  type PipelineOptions,
  type PipelineRun,
} from './pipeline.js';
export { mergeOutputs, mergeReports, type MergeOptions } from './merge.js';
