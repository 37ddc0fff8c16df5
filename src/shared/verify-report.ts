import type { KeyValues } from './row.js';

/** What one verify run found (src/consistency/verify.ts). */
export interface VerifyReport {
  table: string;
  sourceRows: number;
  targetRows: number;
  matching: number;
  mismatched: number;
  missingInTarget: number;
  extraInTarget: number;
  /** Chunks holding at least one differing row. */
  chunksDiffering: number;
  chunks: number;
  samples: {
    mismatched: Array<{ key: string; columns: string[] }>;
    missingInTarget: string[];
    extraInTarget: string[];
  };
  /** Differing keys re-read at the end (after their pending outbox rows drained). */
  rechecked: number;
  /** Keys that still had pending outbox rows after the wait (counted as drift). */
  stillPending: number;
  durationMs: number;
  rowsPerSecond: number;
  clean: boolean;
  /** Every differing key, for --repair (not printed). */
  differingKeys: KeyValues[];
}
