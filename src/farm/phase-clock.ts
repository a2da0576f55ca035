import type { Phase } from '../model/events.js';

/** Where one target's time goes: each phase's milliseconds, for report.json's `phases`. */
export class PhaseClock {
  readonly phases: Partial<Record<Phase, number>> = {};
  #phase: Phase | undefined;
  #since = Date.now();

  constructor(readonly onPhase?: (phase: Phase) => void) {}

  /** Ends the current phase (if any) and starts `next`; undefined stops the clock (waiting is not a phase). */
  enter(next: Phase | undefined): void {
    const now = Date.now();
    if (this.#phase) this.phases[this.#phase] = (this.phases[this.#phase] ?? 0) + now - this.#since;
    this.#phase = next;
    this.#since = now;
    if (next) this.onPhase?.(next);
  }
}
