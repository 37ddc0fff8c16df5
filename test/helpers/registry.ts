/**
 * What a test file holds open and whether one of its tests failed: filled by the helpers that
 * open things (scratch databases, Tandem harnesses), read by the per-file leak check. No
 * imports, so the setup file stays light for unit-test files.
 */

/** Something the leak check can name and release. */
export interface Held {
  describe(): string;
  release(): Promise<void>;
}

export const openDatabases = new Map<string, Held>();
export const runningTandems = new Set<Held>();

let failedTests = 0;

/** Called when a test of this file failed: its databases are then kept for inspection. */
export function noteTestFailure(): void {
  failedTests += 1;
}

export function anyTestFailed(): boolean {
  return failedTests > 0;
}
