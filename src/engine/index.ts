/** The container engine boundary: the Engine interface, its Docker-API implementation, labels. */
export type {
  ContainerSpec,
  Engine,
  EngineContainer,
  ExecOptions,
  ImageInfo,
  VolumeInfo,
  VolumeMount,
} from './engine.js';
export { EngineTimeouts } from './engine.js';
export { connectEngine, engineEndpoint } from './docker-engine.js';
export { Label, newSession, type Session } from './labels.js';
