import { z } from 'zod';

/** Unknown keys are errors, never silently ignored. */
function strictObject<T extends z.ZodRawShape>(shape: T) {
  return z.object(shape).strict();
}

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

const storeUrl = z
  .string()
  .min(1)
  .refine((url) => /^(postgres|postgresql|mysql|mariadb|sqlite):/i.test(url), {
    message: 'must start with postgres://, postgresql://, mysql://, mariadb:// or sqlite:',
  });

/**
 * Every setting Tandem reads. Defaults live here (and are repeated in config/default.yaml
 * for operators to read); JSDoc on each field gives the default.
 */
export const configSchema = strictObject({
    source: strictObject({
      /** Connection URL of the database being left. Default: `sqlite:data/source.db`. */
      url: storeUrl.default('sqlite:data/source.db'),
    }).default({}),
    target: strictObject({
      /** Connection URL of the database being adopted. Default: `sqlite:data/target.db`. */
      url: storeUrl.default('sqlite:data/target.db'),
    }).default({}),
    /** Folder of policy files. Default: `policies`. */
    policiesDir: z.string().min(1).default('policies'),
    /**
     * `serve` processes (node:cluster) sharing the HTTP port, each with its own pools and
     * outbox worker: more than one core. Server databases only (SQLite has one writer). Default: 1.
     */
    workers: positiveInt.max(64).default(1),
    flags: strictObject({
        /** Local flag file in Unleash's features format, used without an Unleash URL. Default: `config/flags.yaml`. */
        file: z.string().min(1).default('config/flags.yaml'),
        /** Unleash server API URL, e.g. `http://unleash:4242/api`. Default: none (use the file). */
        unleashUrl: z.string().url().optional(),
        /** Unleash client (backend) token. Default: none. */
        unleashToken: z.string().min(1).optional(),
        /** How often flags are fetched from Unleash or the file is checked, ms. Default: 1000. */
        refreshIntervalMs: positiveInt.default(1000),
        /** Unleash appName. Default: `tandem`. */
        appName: z.string().min(1).default('tandem'),
        /** Unleash environment. Default: `default`. */
        environment: z.string().min(1).default('default'),
      })
      .default({}),
    http: strictObject({
        /** Listen address. Default: `127.0.0.1`. */
        host: z.string().min(1).default('127.0.0.1'),
        /** Listen port (0 picks a free one). Default: 8080. */
        port: z.number().int().min(0).max(65535).default(8080),
        /** Largest accepted request body (express/bytes syntax). Default: `1mb`. */
        bodyLimit: z.string().regex(/^\d+(b|kb|mb)$/i, 'must look like 512kb or 1mb').default('1mb'),
        /** Bearer tokens accepted by the data API. Default: none (loopback only). */
        apiTokens: z.array(z.string().min(8, 'tokens need at least 8 characters')).default([]),
        /** Bearer token of the admin API. Default: none. */
        adminToken: z.string().min(8, 'tokens need at least 8 characters').optional(),
        /** Longest a request may take before Tandem answers 503, ms. Default: 30000. */
        requestTimeoutMs: positiveInt.default(30_000),
        /**
         * Longest Tandem works on one API request before answering 504 (`timeout`) with
         * `Retry-After`, whatever the databases do, ms. Keep it above `db.statementTimeoutMs`
         * + 1 s (each statement's client-side deadline). Default: 15000.
         */
        requestDeadlineMs: positiveInt.default(15_000),
        /** Deepest JSON nesting accepted in a request body (400 past it). Default: 64. */
        maxJsonDepth: positiveInt.default(64),
      })
      .default({}),
    db: strictObject({
        /** Statement timeout on both stores, ms. Default: 10000. */
        statementTimeoutMs: positiveInt.default(10_000),
        /** Pool size per store (SQLite always uses 1). Default: 10. */
        poolMax: positiveInt.default(10),
        /** Longest wait for a pooled connection, ms. Default: 5000. */
        acquireTimeoutMs: positiveInt.default(5_000),
        /** TCP connect timeout, ms. Default: 3000. */
        connectTimeoutMs: positiveInt.default(3_000),
      })
      .default({}),
    apply: strictObject({
        /** Deadline of one apply to the secondary; past it the connection is destroyed, ms. Default: 1000. */
        timeoutMs: positiveInt.default(1_000),
        /** Deadline of one outbox-worker batch (up to outbox.batchSize keys), ms. Default: 10000. */
        batchTimeoutMs: positiveInt.default(10_000),
        /** Breaker opens when this share of calls in the window failed, percent. Default: 50. */
        errorThresholdPercentage: z.number().min(1).max(100).default(50),
        /** Breaker stays open this long before a trial call, ms. Default: 2000. */
        resetTimeoutMs: positiveInt.default(2_000),
        /** Calls in the window before the breaker may open. Default: 5. */
        volumeThreshold: nonNegativeInt.default(5),
        /** Breaker statistics window, ms. Default: 10000. */
        rollingWindowMs: positiveInt.default(10_000),
        /** Failures in a row that open the breaker, whatever the window's successes. Default: 5. */
        consecutiveFailures: positiveInt.default(5),
      })
      .default({}),
    outbox: strictObject({
        /** Idle poll interval of the outbox worker, ms. Default: 200. */
        pollIntervalMs: positiveInt.default(200),
        /** Rows claimed per batch. Default: 500. */
        batchSize: positiveInt.default(500),
        /** Batch loops of the outbox worker: one claims while another applies (applies take turns). Default: 2. */
        concurrency: positiveInt.max(16).default(2),
        /** Failed attempts before a row becomes dead. Default: 20. */
        maxAttempts: positiveInt.default(20),
        /** First retry delay, doubled per attempt with full jitter, ms. Default: 200. */
        backoffBaseMs: positiveInt.default(200),
        /** Longest retry delay, ms. Default: 30000. */
        backoffMaxMs: positiveInt.default(30_000),
        /** A claim expires after this long (a crashed claimer's rows return), ms. Default: 30000. */
        leaseMs: positiveInt.default(30_000),
        /** How long the worker leaves a fresh row to the request that wrote it, ms. Default: 2000. */
        inlineGraceMs: positiveInt.default(2_000),
        /** Interval of the pending/dead/lag statistics and of forgetting keys other replicas applied (read-your-writes), ms. Default: 1000. */
        housekeepingIntervalMs: positiveInt.default(1_000),
        /**
         * The outbox worker counts as stalled (status, `tandem_outbox_worker_stalled`, alert) when
         * no claim round finished for this long, or rows this old wait while nothing is handled
         * and the secondary's breaker is not open, ms. Default: 60000.
         */
        stallAfterMs: positiveInt.default(60_000),
      })
      .default({}),
    read: strictObject({
      /** Deadline of a read served by the target; past it the read falls back to the primary, ms. Default: 500. */
      targetTimeoutMs: positiveInt.default(500),
      /** Deadline of a shadow read (its connection is cut after it), ms. Default: 1000. */
      shadowTimeoutMs: positiveInt.default(1_000),
      /** Shadow comparisons kept per table for the consistency ratio. Default: 1000. */
      consistencySamples: positiveInt.default(1_000),
      /** Oldest comparison counted in the consistency ratio, ms. Default: 60000. */
      consistencyWindowMs: positiveInt.default(60_000),
      /** Keys with pending outbox rows tracked per process for read-your-writes; past it, the table reads from its primary. Default: 100000. */
      maxPendingKeys: positiveInt.default(100_000),
    }).default({}),
    stages: strictObject({
        /** Interval at which flags are reconciled into table state even without a change event, ms. Default: 2000. */
        reconcileIntervalMs: positiveInt.default(2_000),
      })
      .default({}),
    cutover: strictObject({
        /** How long a write waits while its table switches its primary before it answers 503 with Retry-After, ms. Default: 5000. */
        holdMs: positiveInt.default(5_000),
        /** Lease of the replica running a switch; past it another replica resumes the switch, ms. Default: 10000. */
        leaseMs: positiveInt.default(10_000),
        /** Longest drain of the old primary's outbox during a switch; past it the switch is abandoned and writes resume on the old primary, ms. Default: 60000. */
        drainTimeoutMs: positiveInt.default(60_000),
        /** Test hook: pause this long after recording the named switch step (frozen, drained, identity, promoted). Default: none. */
        pauseAtStep: z.enum(['frozen', 'drained', 'identity', 'promoted']).optional(),
        /** Test hook: how long `pauseAtStep` pauses, ms. Default: 30000. */
        pauseMs: positiveInt.default(30_000),
      })
      .default({}),
    shutdown: strictObject({
        /** Longest wait for in-flight requests on SIGTERM, ms. Default: 10000. */
        drainTimeoutMs: positiveInt.default(10_000),
      })
      .default({}),
    sql: strictObject({
        /** PostgreSQL-protocol listener port (0 picks a free one). Default: none (the SQL front is off). */
        port: z.number().int().min(0).max(65535).optional(),
        /** Listen address of the SQL front. Default: `127.0.0.1`. */
        host: z.string().min(1).default('127.0.0.1'),
        /**
         * Users allowed to connect, authenticated with SCRAM-SHA-256. Default: none, which
         * means no password check and is refused off loopback.
         */
        users: z.array(strictObject({ name: z.string().min(1).max(63), password: z.string().min(8, 'passwords need at least 8 characters') })).default([]),
        /** Client sessions at once; one more is refused with SQLSTATE 53300. Default: 100. */
        maxSessions: positiveInt.default(100),
        /** Connections to the primary shared by all sessions. Default: 10. */
        poolMax: positiveInt.default(10),
        /** Statement timeout on the primary for SQL-front statements, ms. Default: 30000. */
        statementTimeoutMs: positiveInt.default(30_000),
        /** Largest protocol message accepted from a client, bytes; larger is refused with 54000. Default: 1048576. */
        maxMessageBytes: positiveInt.default(1_048_576),
        /**
         * TLS for the SQL front: PEM certificate (chain) and private key files. With both set a
         * client's SSLRequest is answered with TLS; without, it is declined ('N'). Default: none.
         */
        tls: strictObject({
          cert: z.string().min(1),
          key: z.string().min(1),
          /** Refuse clients that do not ask for TLS (SQLSTATE 28000). Default: false. */
          required: z.boolean().default(false),
        }).optional(),
      })
      .default({}),
    log: strictObject({
        /** pino level. Default: `info`. */
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .default({}),
  });

export type TandemConfig = z.output<typeof configSchema>;
