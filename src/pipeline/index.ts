export {
  checkPipelineInputs,
  pipelineExitCode,
  runPipeline,
  type PipelineOptions,
  type PipelineRun,
} from './pipeline.js';
