/**
 * The OpenAPI 3.0 document of the data and admin APIs, served at `/openapi.json`. A test
 * validates it and walks the express router: every route the app serves must be here.
 */

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ref('Problem') } } });
const json = (description: string, schema: Schema) => ({ description, content: { 'application/json': { schema } } });
const body = (schema: Schema, required = true) => ({ required, content: { 'application/json': { schema } } });
const tableParam = { name: 'table', in: 'path', required: true, description: 'Policy name of the table', schema: { type: 'string' } };
const keyParam = {
  name: 'key',
  in: 'path',
  required: true,
  description: 'Primary-key value; a composite key joins its URL-encoded parts with "," in policy order',
  schema: { type: 'string' },
};
const stickyHeader = { name: 'Tandem-Sticky-Key', in: 'header', required: false, description: 'User or session id for sticky read routing', schema: { type: 'string', maxLength: 256 } };
const dataErrors = {
  '400': problem('Bad input; `field` names it'),
  '401': problem('No or invalid bearer token'),
  '404': problem('Unknown table, column or key'),
  '503': problem('The primary is unavailable, or Tandem is shutting down'),
};
const adminErrors = {
  '401': problem('No or invalid admin token'),
  '403': problem('A data token was given; the admin API needs the admin token'),
};
const writeHeader = { 'Tandem-Write': { description: 'applied | queued | primary-only', schema: { type: 'string', enum: ['applied', 'queued', 'primary-only'] } } };
const readHeader = { 'Tandem-Read': { description: 'The store that served the read', schema: { type: 'string', enum: ['source', 'target'] } } };
const rowResponse = (description: string, headers: Schema) => ({ ...json(description, { type: 'object', properties: { row: ref('Row') }, required: ['row'] }), headers });

const admin = (summary: string, operation: Schema): Schema => ({ tags: ['admin'], summary, security: [{ adminToken: [] }], ...operation });
const data = (summary: string, operation: Schema): Schema => ({ tags: ['data'], summary, security: [{ dataToken: [] }], ...operation });

export function openApiDocument(): Schema {
  return {
    openapi: '3.0.3',
    info: {
      title: 'Tandem',
      version: '0.1.0',
      description: 'Dual-write database proxy for zero-downtime migrations: the data API, the admin API and the operational endpoints.',
      license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
    },
    tags: [
      { name: 'data', description: 'Rows of policy tables (data token)' },
      { name: 'admin', description: 'Status and controls of the migration (admin token)' },
      { name: 'operations', description: 'Health, metrics, this document and the console (no token)' },
    ],
    paths: {
      '/v1/tables/{table}/rows': {
        parameters: [tableParam],
        post: data('Insert a row', {
          operationId: 'insertRow',
          requestBody: body(ref('ValuesBody')),
          responses: { '201': rowResponse('The row as stored, generated columns included', writeHeader), ...dataErrors },
        }),
        get: data('List rows with equality filters on policy columns, keyset pages', {
          operationId: 'listRows',
          parameters: [
            { name: '_limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1 } },
            { name: '_after', in: 'query', required: false, description: 'The `next` token of the previous page', schema: { type: 'string' } },
            { name: 'filters', in: 'query', required: false, description: 'column=value equality filters', style: 'form', explode: true, schema: { type: 'object', additionalProperties: { type: 'string' } } },
            stickyHeader,
          ],
          responses: {
            '200': {
              ...json('A page of rows', { type: 'object', properties: { rows: { type: 'array', items: ref('Row') }, next: { type: 'string', nullable: true } }, required: ['rows'] }),
              headers: readHeader,
            },
            ...dataErrors,
          },
        }),
      },
      '/v1/tables/{table}/rows/{key}': {
        parameters: [tableParam, keyParam],
        get: data('Read a row by key', { operationId: 'getRow', parameters: [stickyHeader], responses: { '200': rowResponse('The row', readHeader), ...dataErrors } }),
        patch: data('Update a row', { operationId: 'updateRow', requestBody: body(ref('ValuesBody')), responses: { '200': rowResponse('The updated row', writeHeader), ...dataErrors } }),
        put: data('Upsert a row', {
          operationId: 'upsertRow',
          requestBody: body(ref('ValuesBody')),
          responses: { '200': rowResponse('Updated', writeHeader), '201': rowResponse('Inserted', writeHeader), ...dataErrors },
        }),
        delete: data('Delete a row', { operationId: 'deleteRow', responses: { '204': { description: 'Deleted', headers: writeHeader }, ...dataErrors } }),
      },
      '/v1/batch': {
        post: data('Several writes in one primary transaction, all or nothing', {
          operationId: 'batch',
          requestBody: body({
            type: 'object',
            required: ['ops'],
            properties: {
              ops: {
                type: 'array',
                minItems: 1,
                maxItems: 1000,
                items: {
                  type: 'object',
                  required: ['op', 'table'],
                  properties: {
                    op: { type: 'string', enum: ['insert', 'update', 'upsert', 'delete'] },
                    table: { type: 'string' },
                    key: { description: 'Key value, or an object of key columns for a composite key' },
                    values: { type: 'object', additionalProperties: true },
                  },
                },
              },
            },
          }),
          responses: {
            '200': {
              ...json('One result per operation', { type: 'object', properties: { results: { type: 'array', items: { type: 'object', additionalProperties: true } } } }),
              headers: writeHeader,
            },
            ...dataErrors,
          },
        }),
      },
      '/v1/sql': {
        post: data('SQL through the SQL front\'s classifier and write path (a PostgreSQL primary only)', {
          operationId: 'sql',
          requestBody: body({
            type: 'object',
            description: 'One statement (`sql`, `params`) or `statements`: up to 100, run in one transaction',
            properties: {
              sql: { type: 'string' },
              params: { type: 'array', items: {} },
              statements: {
                type: 'array',
                minItems: 1,
                maxItems: 100,
                items: { type: 'object', required: ['sql'], properties: { sql: { type: 'string' }, params: { type: 'array', items: {} } } },
              },
            },
          }),
          responses: {
            '200': json('The statement\'s result, or `{"results": […]}` for `statements`', {
              type: 'object',
              properties: {
                command: { type: 'string' },
                rowCount: { type: 'integer', nullable: true },
                fields: { type: 'array', items: { type: 'object', additionalProperties: true } },
                rows: { type: 'array', items: { type: 'object', additionalProperties: true } },
                results: { type: 'array', items: { type: 'object', additionalProperties: true } },
              },
            }),
            '409': problem('A constraint refused the statement (SQLSTATE class 23); `sqlstate` carries it'),
            '422': problem('Refused (SQLSTATE 0A000): the statement would escape replication, writes a table whose primary moved to the target at cutover, or reads one whose source is stale'),
            ...dataErrors,
          },
        }),
      },
      '/admin/status': {
        get: admin('Per table: stage, flags, read %, lag, outbox, breakers, brake, last verify', {
          operationId: 'status',
          responses: { '200': json('Status of this Tandem', ref('Status')), ...adminErrors },
        }),
      },
      '/admin/outbox': {
        get: admin('Dead outbox rows (error and attempts)', {
          operationId: 'listDeadRows',
          parameters: [
            { name: 'status', in: 'query', required: false, schema: { type: 'string', enum: ['dead'] } },
            { name: 'table', in: 'query', required: false, schema: { type: 'string' } },
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
          ],
          responses: { '200': json('Dead rows, oldest first', { type: 'object', properties: { rows: { type: 'array', items: ref('DeadRow') } } }), '400': problem('Bad parameter'), '404': problem('Unknown table'), ...adminErrors },
        }),
      },
      '/admin/outbox/replay': {
        post: admin('Make dead outbox rows pending again (all, a table\'s, or by id)', {
          operationId: 'replayDeadRows',
          requestBody: body({ type: 'object', properties: { table: { type: 'string' }, ids: { type: 'array', items: { type: 'string', pattern: '^\\d+$' } }, store: { type: 'string', enum: ['source', 'target'], description: 'The outbox the ids belong to (`store` in the listing); needed only when an id is dead in both' } } }, false),
          responses: { '200': json('How many rows were replayed', { type: 'object', properties: { replayed: { type: 'integer' } } }), '400': problem('Bad ids'), '404': problem('Unknown table'), ...adminErrors },
        }),
      },
      '/admin/tables/{table}/brake/release': {
        parameters: [tableParam],
        post: admin('Release the safety brake of a table (target reads resume)', {
          operationId: 'releaseBrake',
          responses: { '200': json('Whether a brake was on', { type: 'object', properties: { table: { type: 'string' }, released: { type: 'boolean' } } }), '404': problem('Unknown table'), ...adminErrors },
        }),
      },
      '/admin/tables/{table}/verify': {
        parameters: [tableParam],
        post: admin('Run verify (and repair) and wait for its report', {
          operationId: 'verify',
          requestBody: body({ type: 'object', properties: { repair: { type: 'boolean', default: false } } }, false),
          responses: { '200': json('The verify report', ref('VerifyReport')), '400': problem('Bad option'), '404': problem('Unknown table'), ...adminErrors },
        }),
      },
      '/admin/tables/{table}/jobs': {
        parameters: [tableParam],
        post: admin('Start verify or backfill in the background; poll the job for progress', {
          operationId: 'startJob',
          requestBody: body({
            type: 'object',
            required: ['kind'],
            properties: {
              kind: { type: 'string', enum: ['verify', 'backfill'] },
              repair: { type: 'boolean', description: 'verify: re-enqueue differing keys' },
              rate: { type: 'integer', minimum: 1, description: 'backfill: rows per second at most' },
              chunk: { type: 'integer', minimum: 1, description: 'backfill: rows per chunk' },
              restart: { type: 'boolean', description: 'backfill: forget the checkpoint' },
            },
          }),
          responses: {
            '202': { ...json('The job, running', ref('Job')), headers: { Location: { description: 'The job to poll', schema: { type: 'string' } } } },
            '400': problem('Bad option'),
            '404': problem('Unknown table'),
            '409': problem('The same job already runs for this table'),
            ...adminErrors,
          },
        }),
      },
      '/admin/jobs': {
        get: admin('Running and recent jobs, newest first', { operationId: 'listJobs', responses: { '200': json('Jobs', { type: 'object', properties: { jobs: { type: 'array', items: ref('Job') } } }), ...adminErrors } }),
      },
      '/admin/jobs/{id}': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        get: admin('One job: state, progress (done, total, rate, ETA), result', { operationId: 'getJob', responses: { '200': json('The job', ref('Job')), '404': problem('No such job'), ...adminErrors } }),
      },
      '/admin/jobs/{id}/stop': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        post: admin('Ask a running job to stop between chunks (a backfill keeps its checkpoint)', {
          operationId: 'stopJob',
          responses: { '200': json('Whether it was running', { type: 'object', properties: { id: { type: 'string' }, stopping: { type: 'boolean' } } }), '404': problem('No such job'), ...adminErrors },
        }),
      },
      '/admin/tables/{table}/history': {
        parameters: [tableParam],
        get: admin('The last hour of samples for the console\'s charts (in-process, without Prometheus)', {
          operationId: 'history',
          responses: { '200': json('Columnar samples', ref('History')), '404': problem('Unknown table'), ...adminErrors },
        }),
      },
      '/admin/flags': {
        get: admin('Flags per table, where they come from and whether Tandem can edit them', {
          operationId: 'listFlags',
          responses: { '200': json('Flags', { type: 'object', additionalProperties: true }), ...adminErrors },
        }),
      },
      '/admin/flags/{name}': {
        parameters: [{ name: 'name', in: 'path', required: true, description: 'A Tandem flag, e.g. tandem.people.read-target', schema: { type: 'string' } }],
        put: admin('Set a flag in the local flag file (written atomically; refused when flags come from Unleash)', {
          operationId: 'setFlag',
          requestBody: body({
            type: 'object',
            required: ['value'],
            properties: { value: { description: 'true/false for on/off flags; an integer 0-100 for read-target and shadow-read', oneOf: [{ type: 'boolean' }, { type: 'integer', minimum: 0, maximum: 100 }] } },
          }),
          responses: {
            '200': json('The flag as written', { type: 'object', properties: { name: { type: 'string' }, enabled: { type: 'boolean' }, percent: { type: 'integer', nullable: true }, file: { type: 'string' } } }),
            '400': problem('Bad value'),
            '404': problem('Not a Tandem flag of a known table'),
            '409': problem('Flags come from Unleash'),
            ...adminErrors,
          },
        }),
      },
      '/admin/capabilities': {
        get: admin('What this build can do (cutover and rollback stay false until the fenced switch exists)', {
          operationId: 'capabilities',
          responses: {
            '200': json('Capabilities', {
              type: 'object',
              properties: { cutover: { type: 'boolean' }, rollback: { type: 'boolean' }, flagsEditable: { type: 'boolean' }, jobs: { type: 'array', items: { type: 'string' } } },
            }),
            ...adminErrors,
          },
        }),
      },
      '/healthz': { get: { tags: ['operations'], summary: 'The process is up', operationId: 'healthz', responses: { '200': json('Up', { type: 'object', properties: { status: { type: 'string' } } }) } } },
      '/readyz': {
        get: {
          tags: ['operations'],
          summary: 'This instance can take writes (primary reachable, flags loaded)',
          operationId: 'readyz',
          responses: { '200': json('Ready', { type: 'object', additionalProperties: true }), '503': json('Not ready, with the failing checks', { type: 'object', additionalProperties: true }) },
        },
      },
      '/metrics': { get: { tags: ['operations'], summary: 'Prometheus metrics', operationId: 'metrics', responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
      '/openapi.json': { get: { tags: ['operations'], summary: 'This document', operationId: 'openapi', responses: { '200': json('OpenAPI 3.0 document', { type: 'object' }) } } },
      '/console': { get: { tags: ['operations'], summary: 'The operators\' web console (sign in with the admin token)', operationId: 'console', responses: { '200': { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } } } } },
      '/console/assets/{file}': {
        get: {
          tags: ['operations'],
          summary: 'The console\'s bundled script and style sheet',
          operationId: 'consoleAsset',
          parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': { description: 'A static asset' }, '404': problem('No such asset') },
        },
      },
    },
    components: {
      securitySchemes: {
        dataToken: { type: 'http', scheme: 'bearer', description: 'One of TANDEM_API_TOKENS (open on loopback when none is set)' },
        adminToken: { type: 'http', scheme: 'bearer', description: 'TANDEM_ADMIN_TOKEN (open on loopback when no token is set)' },
      },
      schemas: {
        Problem: {
          type: 'object',
          description: 'RFC 9457 problem details with Tandem\'s stable code',
          required: ['type', 'title', 'status', 'detail', 'code'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
            code: { type: 'string' },
            field: { type: 'string' },
            requestId: { type: 'string' },
          },
        },
        Row: { type: 'object', additionalProperties: true, description: 'Column values by source column name' },
        ValuesBody: { type: 'object', required: ['values'], properties: { values: { type: 'object', additionalProperties: true } } },
        DeadRow: {
          type: 'object',
          properties: {
            store: { type: 'string', enum: ['source', 'target'], description: 'The store whose outbox holds the row (the target\'s after a cutover)' },
            id: { type: 'string' },
            table: { type: 'string' },
            rowKey: { type: 'string' },
            op: { type: 'string' },
            attempts: { type: 'integer' },
            lastError: { type: 'string', nullable: true },
            createdAt: { type: 'string', format: 'date-time' },
          },
        },
        VerifyReport: {
          type: 'object',
          additionalProperties: true,
          properties: {
            table: { type: 'string' },
            clean: { type: 'boolean' },
            matching: { type: 'integer' },
            mismatched: { type: 'integer' },
            missingInTarget: { type: 'integer' },
            extraInTarget: { type: 'integer' },
            repaired: { type: 'integer' },
            staleCleared: { type: 'boolean' },
          },
        },
        Job: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            kind: { type: 'string', enum: ['verify', 'backfill'] },
            table: { type: 'string' },
            options: { type: 'object', additionalProperties: true },
            state: { type: 'string', enum: ['running', 'succeeded', 'failed', 'stopped'] },
            startedAt: { type: 'string', format: 'date-time' },
            finishedAt: { type: 'string', format: 'date-time', nullable: true },
            progress: {
              type: 'object',
              properties: { phase: { type: 'string' }, done: { type: 'integer' }, total: { type: 'integer' }, rowsPerSecond: { type: 'number' }, etaSeconds: { type: 'number', nullable: true } },
            },
            result: { nullable: true, description: 'The verify or backfill report when finished' },
            error: { type: 'string', nullable: true },
          },
        },
        History: {
          type: 'object',
          properties: {
            table: { type: 'string' },
            intervalSeconds: { type: 'number' },
            t: { type: 'array', items: { type: 'number' }, description: 'Sample times, Unix seconds' },
            series: { type: 'object', additionalProperties: { type: 'array', items: { type: 'number', nullable: true } } },
          },
        },
        Status: {
          type: 'object',
          properties: {
            version: { type: 'string' },
            uptimeSeconds: { type: 'integer' },
            stores: { type: 'object', additionalProperties: true },
            flags: { type: 'object', additionalProperties: true },
            tables: {
              type: 'array',
              items: {
                type: 'object',
                additionalProperties: true,
                properties: {
                  table: { type: 'string' },
                  stage: { type: 'string', enum: ['source-only', 'dual-write', 'target-primary', 'target-only'] },
                  primary: { type: 'string' },
                  stale: { type: 'boolean' },
                  staleReason: { type: 'string', nullable: true },
                  readTargetPercent: { type: 'number' },
                  shadowReadPercent: { type: 'number' },
                  consistency: { type: 'object', properties: { ratio: { type: 'number' }, samples: { type: 'integer' } } },
                  brake: { type: 'object', nullable: true, additionalProperties: true },
                  lastVerify: { type: 'object', nullable: true, additionalProperties: true },
                  outbox: { type: 'object', properties: { pending: { type: 'integer' }, dead: { type: 'integer' }, lagSeconds: { type: 'number' } } },
                },
              },
            },
          },
        },
      },
    },
  };
}
