import type { Target, TargetResult } from './result.js';

/** The steps a target goes through once its image is ready, named as report.json's `phases` names them. */
export type Phase = 'start' | 'copyIn' | 'evaluate' | 'build' | 'copyOut';

/** What a target is doing, for live progress: waiting for its image, or one of the build phases. */
export type TargetActivity = 'image' | Phase;

export interface ImageEvents {
  onPrepare?: (ref: string, what: string) => void;
  /** What a preparation is doing now (`downloading 3 package(s), 14.2 MB`, mmdebstrap's stage). */
  onProgress?: (ref: string, what: string) => void;
  onReady?: (ref: string, ms: number, reused: boolean) => void;
  /** A preparation that failed (its targets fail with the reason). */
  onFailed?: (ref: string) => void;
}

/** Everything a build run tells a progress view while it runs. */
export interface FarmEvents extends ImageEvents {
  onTargetStart?: (target: Target) => void;
  onTargetPhase?: (target: Target, phase: TargetActivity) => void;
  onTargetDone?: (result: TargetResult) => void;
  /** Something went wrong that does not fail the run (a cache that cannot be written, leftovers), one line. */
  onWarning?: (message: string) => void;
}
