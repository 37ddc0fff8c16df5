import type { Stage } from '../events.js';

/** The flags of one table, read at one moment. */
export interface TableFlags {
  dualWrite: boolean;
  targetPrimary: boolean;
  retireSource: boolean;
}

export function flagNames(table: string) {
  return {
    dualWrite: `tandem.${table}.dual-write`,
    readTarget: `tandem.${table}.read-target`,
    shadowRead: `tandem.${table}.shadow-read`,
    targetPrimary: `tandem.${table}.target-primary`,
    retireSource: `tandem.${table}.retire-source`,
  } as const;
}

export const KILL_SWITCH_FLAG = 'tandem.kill-switch';

/** Stages this build can run. */
export const SUPPORTED_STAGES: readonly Stage[] = ['source-only', 'dual-write', 'target-primary', 'target-only'];

export interface StageDecision {
  stage: Stage;
  /** Set when the flags ask for something impossible; the previous stage is kept. */
  conflict?: string;
}

/**
 * Flags are desired state; this decides the stage to run. An impossible combination
 * (or a jump this build cannot make) keeps the previous stage and says why.
 */
export function resolveStage(flags: TableFlags, previous: Stage, supported: readonly Stage[] = SUPPORTED_STAGES): StageDecision {
  if (flags.retireSource && !flags.targetPrimary) {
    return { stage: previous, conflict: 'retire-source requires target-primary' };
  }
  if (flags.targetPrimary && !flags.dualWrite) {
    return { stage: previous, conflict: 'target-primary requires dual-write' };
  }
  const desired: Stage = flags.retireSource
    ? 'target-only'
    : flags.targetPrimary
      ? 'target-primary'
      : flags.dualWrite
        ? 'dual-write'
        : 'source-only';
  // Leaving target-only turns reverse replication back on (target-primary) with the source
  // still marked stale; the way back to the source opens after a reverse resync and a clean verify.
  if (previous === 'target-only' && desired !== 'target-only' && !(desired === 'target-primary' && supported.includes('target-primary'))) {
    return { stage: previous, conflict: 'target-only can only be left to target-primary: the source is stale; resync it (tandem backfill --reverse, then verify) before rolling back' };
  }
  if (!supported.includes(desired)) {
    const canFallBack = previous === 'source-only' || previous === 'dual-write' || previous === 'target-primary';
    // The nearest supported stage on the way: target-primary for target-only, else dual-write.
    const fallback: Stage = !canFallBack
      ? previous
      : desired === 'target-only' && supported.includes('target-primary')
        ? 'target-primary'
        : supported.includes('dual-write') && flags.dualWrite
          ? 'dual-write'
          : previous;
    return { stage: fallback, conflict: `stage ${desired} is not supported by this version of Tandem` };
  }
  return { stage: desired };
}
