import { z } from 'zod';
import type { ColumnKind } from '../shared/column-kind.js';

const identifier = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'must be a plain identifier (letters, digits, _; at most 63)');

/** The YAML shape of one policy file. */
export const policyFileSchema = z
  .object({
    /** API name and source table. */
    table: identifier,
    /** Primary-key columns in key order. Default: the source table's primary key. */
    primaryKey: z.array(identifier).min(1).optional(),
    target: z
      .object({
        /** Target table. Default: same name. */
        table: identifier.optional(),
        /** source column → target column. Others keep their name. */
        columns: z.record(identifier, identifier).default({}),
        /** Source columns that are not copied. */
        exclude: z.array(identifier).default([]),
      })
      .strict()
      .default({}),
    /** Columns whose values never appear in logs. */
    redact: z.array(identifier).default([]),
    /** Read comparison settings (used by shadow reads and verify). */
    compare: z
      .object({
        ignore: z.array(identifier).default([]),
        timestampPrecision: z.enum(['s', 'ms', 'us']).default('ms'),
        floatTolerance: z.number().nonnegative().default(1e-9),
        caseInsensitive: z.array(identifier).default([]),
        repair: z.boolean().default(false),
      })
      .strict()
      .default({}),
    /** Safety-brake thresholds. */
    safety: z
      .object({
        maxTargetErrorRate: z.number().min(0).max(1).default(0.1),
        minConsistency: z.number().min(0).max(1).default(0.99),
        maxLagSeconds: z.number().positive().default(120),
        warnTargetErrorRate: z.number().min(0).max(1).default(0.05),
        warnConsistency: z.number().min(0).max(1).default(0.995),
        warnLagSeconds: z.number().positive().default(30),
        window: z.string().regex(/^\d+(ms|s|m)$/).default('60s'),
        minSamples: z.number().int().positive().default(100),
        /**
         * After a cutover: the p99 of writes acknowledged by the target (the primary
         * transaction, in ms) over the window, on at least `minSamples` writes. Default 1000;
         * warn at 500.
         */
        maxWriteLatencyMs: z.number().positive().default(1000),
        warnWriteLatencyMs: z.number().positive().default(500),
        /**
         * After a cutover, a tripped brake also switches the primary back to the source (the
         * fenced rollback) and holds it there until an operator releases the brake. The
         * rollback drains the target's outbox first, so it completes once the target answers
         * again (README: automatic rollback). Default: false.
         */
        autoRollback: z.boolean().default(false),
      })
      .strict()
      .default({}),
  })
  .strict();

export type PolicyFile = z.output<typeof policyFileSchema>;

export interface BoundColumn {
  /** Source column name (the API's name). */
  name: string;
  kind: ColumnKind;
  type: string;
  nullable: boolean;
  maxLength: number | null;
  /** Inclusive range of an integer column on the source, when fixed-width. */
  range: readonly [bigint, bigint] | undefined;
  /** Target column name, or null when excluded. */
  targetName: string | null;
  targetKind: ColumnKind | null;
  /** Target catalog type name, when mapped (e.g. `char` vs `character` decides blank padding). */
  targetType?: string | null;
}

/** A policy checked against both databases: everything the data path needs, resolved once. */
export interface Policy {
  /** API name = source table. */
  readonly name: string;
  readonly sourceTable: string;
  readonly targetTable: string;
  readonly primaryKey: readonly string[];
  readonly targetPrimaryKey: readonly string[];
  readonly columns: ReadonlyMap<string, BoundColumn>;
  readonly redact: ReadonlySet<string>;
  readonly file: PolicyFile;
  readonly sourcePath: string;
}
