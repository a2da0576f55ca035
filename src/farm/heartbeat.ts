import { EngineTimeouts, type Engine } from '../engine/index.js';

/**
 * Pings the engine every few seconds while a run goes on, so a dead or frozen engine stops the run within
 * about `heartbeatEvery + heartbeat` instead of leaving every build to wait for its own time limit.
 * Returns a function that stops it.
 */
export function startHeartbeat(engine: Engine, onLost: (error: unknown) => void): () => void {
  let busy = false;
  let stopped = false;
  const beat = async () => {
    if (busy || stopped) return;
    busy = true;
    try {
      await engine.ping(EngineTimeouts.heartbeat);
    } catch (error) {
      if (!stopped) onLost(error);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void beat(), EngineTimeouts.heartbeatEvery).unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
