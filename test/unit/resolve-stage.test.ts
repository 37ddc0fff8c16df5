import { describe, it, expect } from 'vitest';
import { STAGES, type Stage } from '../../src/events.js';
import {
  flagNames,
  KILL_SWITCH_FLAG,
  resolveStage,
  SUPPORTED_STAGES,
  type TableFlags,
} from '../../src/flags/resolve-stage.js';

const OFF: TableFlags = { dualWrite: false, targetPrimary: false, retireSource: false };
const DUAL: TableFlags = { dualWrite: true, targetPrimary: false, retireSource: false };
const PRIMARY: TableFlags = { dualWrite: true, targetPrimary: true, retireSource: false };
const RETIRE: TableFlags = { dualWrite: true, targetPrimary: true, retireSource: true };
/** Every stage, as a build with cutover would support. */
const ALL: readonly Stage[] = STAGES;

describe('resolveStage with every stage supported', () => {
  it.each([
    [OFF, 'source-only'],
    [DUAL, 'dual-write'],
    [PRIMARY, 'target-primary'],
    [RETIRE, 'target-only'],
  ] as const)('%o → %s without conflict', (flags, stage) => {
    for (const previous of ['source-only', 'dual-write', 'target-primary'] as const) {
      expect(resolveStage(flags, previous, ALL)).toEqual({ stage });
    }
  });

  it('rolls dual-write back to source-only when the flag goes off', () => {
    expect(resolveStage(OFF, 'dual-write', ALL)).toEqual({ stage: 'source-only' });
  });

  it('target-primary without dual-write keeps the previous stage and reports a conflict', () => {
    const flags = { dualWrite: false, targetPrimary: true, retireSource: false };
    for (const previous of ['source-only', 'dual-write', 'target-primary'] as const) {
      const decision = resolveStage(flags, previous, ALL);
      expect(decision.stage).toBe(previous);
      expect(decision.conflict).toMatch(/target-primary requires dual-write/);
    }
  });

  it('retire-source without target-primary keeps the previous stage and reports a conflict', () => {
    const flags = { dualWrite: true, targetPrimary: false, retireSource: true };
    for (const previous of ['source-only', 'dual-write', 'target-primary'] as const) {
      const decision = resolveStage(flags, previous, ALL);
      expect(decision.stage).toBe(previous);
      expect(decision.conflict).toMatch(/retire-source requires target-primary/);
    }
  });

  it('retire-source with target-primary but without dual-write is a conflict too', () => {
    const decision = resolveStage({ dualWrite: false, targetPrimary: true, retireSource: true }, 'target-primary', ALL);
    expect(decision.stage).toBe('target-primary');
    expect(decision.conflict).toMatch(/requires dual-write/);
  });

  it('leaves target-only only to target-primary (reverse replication on again; the source stays stale)', () => {
    expect(resolveStage(PRIMARY, 'target-only', ALL)).toEqual({ stage: 'target-primary' });
  });

  it.each([OFF, DUAL, { dualWrite: true, targetPrimary: false, retireSource: true }])(
    'refuses to leave target-only for flags %o',
    (flags) => {
      const decision = resolveStage(flags, 'target-only', ALL);
      expect(decision.stage).toBe('target-only');
      expect(decision.conflict).toBeDefined();
    },
  );

  it('names the stale source when refusing to leave target-only', () => {
    expect(resolveStage(OFF, 'target-only', ALL).conflict).toMatch(/source is stale; resync it/);
  });

  it('stays in target-only quietly while the flags still ask for it', () => {
    expect(resolveStage(RETIRE, 'target-only', ALL)).toEqual({ stage: 'target-only' });
  });
});

describe('resolveStage with this build’s supported stages', () => {
  it('supports every stage', () => {
    expect([...SUPPORTED_STAGES]).toEqual(['source-only', 'dual-write', 'target-primary', 'target-only']);
  });

  it('uses SUPPORTED_STAGES by default', () => {
    expect(resolveStage(PRIMARY, 'dual-write')).toEqual(resolveStage(PRIMARY, 'dual-write', SUPPORTED_STAGES));
    expect(resolveStage(DUAL, 'source-only')).toEqual({ stage: 'dual-write' });
    expect(resolveStage(PRIMARY, 'dual-write')).toEqual({ stage: 'target-primary' });
  });

  it('falls back from unsupported target-primary to dual-write with a conflict message', () => {
    for (const previous of ['source-only', 'dual-write'] as const) {
      const decision = resolveStage(PRIMARY, previous, ['source-only', 'dual-write']);
      expect(decision.stage).toBe('dual-write');
      expect(decision.conflict).toBe('stage target-primary is not supported by this version of Tandem');
    }
  });

  it('falls back from unsupported target-only to target-primary with a conflict message', () => {
    const decision = resolveStage(RETIRE, 'dual-write', ['source-only', 'dual-write', 'target-primary']);
    expect(decision.stage).toBe('target-primary');
    expect(decision.conflict).toMatch(/stage target-only is not supported/);
    expect(resolveStage(RETIRE, 'dual-write', ['source-only', 'dual-write']).stage).toBe('dual-write');
  });

  it('keeps the previous stage when even dual-write is unsupported', () => {
    const decision = resolveStage(DUAL, 'source-only', ['source-only']);
    expect(decision.stage).toBe('source-only');
    expect(decision.conflict).toMatch(/stage dual-write is not supported/);
  });

  it('never leaves target-only, even through the unsupported-stage fallback', () => {
    // A table left in target-only (e.g. by a newer build before a downgrade) must stay there:
    // DESIGN §2 "target-only → rollback refused: source is stale". Falling back to dual-write
    // would make the stale source primary again.
    const decision = resolveStage(OFF, 'target-only', ['source-only', 'dual-write']);
    expect(decision.stage).toBe('target-only');
    expect(decision.conflict).toBeDefined();
  });
});

describe('flag names', () => {
  it('follows tandem.<table>.<flag>', () => {
    expect(flagNames('users')).toEqual({
      dualWrite: 'tandem.users.dual-write',
      readTarget: 'tandem.users.read-target',
      shadowRead: 'tandem.users.shadow-read',
      targetPrimary: 'tandem.users.target-primary',
      retireSource: 'tandem.users.retire-source',
    });
    expect(KILL_SWITCH_FLAG).toBe('tandem.kill-switch');
  });
});
