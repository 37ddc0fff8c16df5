import { Router, type Request, type Response } from 'express';
import { TandemError } from '../errors.js';
import type { Policy } from '../policy/policy.js';
import { keyFromJson, parseKey } from '../policy/row-key.js';
import { validateValues } from '../policy/validate-values.js';
import { DEFAULT_PAGE, MAX_PAGE, type ReadService } from '../read/read-service.js';
import type { WriteOp, WriteOutcome, WriteService } from '../write/write-service.js';

export const MAX_BATCH_OPS = 1000;

export interface DataRouteDeps {
  policies: ReadonlyMap<string, Policy>;
  writes: WriteService;
  reads: ReadService;
}

/** The data API (DESIGN §7). Table names come only from policies; everything else is a 404. */
export function dataRoutes(deps: DataRouteDeps): Router {
  const router = Router();
  const { policies, writes, reads } = deps;

  const policyOf = (req: Request, res: Response, field = 'table'): Policy => {
    const name = String(req.params['table'] ?? '');
    const policy = policies.get(name);
    if (!policy) throw new TandemError('unknown_table', 404, `${field}: no table named "${truncate(name)}"`, { field });
    res.locals['table'] = policy.name;
    return policy;
  };
  const rawKey = (req: Request): string => {
    // req.params is already URL-decoded; composite keys need the raw segment to split on ",".
    const segments = req.path.split('/');
    return segments[segments.length - 1] ?? '';
  };
  const bodyValues = (req: Request): unknown => {
    const body: unknown = req.body;
    if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new TandemError('bad_request', 400, 'body: expected a JSON object {"values": {...}} with Content-Type application/json', {
        field: 'body',
      });
    }
    const values = (body as Record<string, unknown>)['values'];
    if (values === undefined) throw new TandemError('bad_request', 400, 'values: required', { field: 'values' });
    return values;
  };
  const sendWrite = (res: Response, outcome: WriteOutcome) => {
    const result = outcome.results[0];
    res.setHeader('Tandem-Write', outcome.disposition);
    res.setHeader('Tandem-Primary', outcome.primary);
    if (!result) return res.status(500).end();
    if (result.status === 204) return res.status(204).end();
    res.status(result.status).json({ row: result.row });
  };
  const route = (res: Response, name: string) => {
    res.locals['route'] = name;
  };

  router.post('/v1/tables/:table/rows', async (req, res) => {
    route(res, '/v1/tables/:table/rows');
    const policy = policyOf(req, res);
    const values = validateValues(policy, bodyValues(req));
    sendWrite(res, await writes.write([{ op: 'insert', policy, values, field: 'values' }], res.locals['requestId'] as string));
  });

  router.get('/v1/tables/:table/rows', async (req, res) => {
    route(res, '/v1/tables/:table/rows');
    const policy = policyOf(req, res);
    const filters: Record<string, string> = {};
    let limit = DEFAULT_PAGE;
    let after: string | undefined;
    for (const [name, raw] of Object.entries(req.query)) {
      if (typeof raw !== 'string') throw new TandemError('bad_request', 400, `${name}: give it once, as a plain value`, { field: name });
      if (name === '_limit') {
        if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_PAGE) {
          throw new TandemError('invalid_value', 400, `_limit: expected an integer from 1 to ${MAX_PAGE}`, { field: '_limit' });
        }
        limit = Number(raw);
      } else if (name === '_after') {
        after = raw; // the `next` token exactly as returned (clients URL-encode it as a query value)
      } else if (name.startsWith('_')) {
        throw new TandemError('bad_request', 400, `${name}: unknown parameter (use _limit, _after or column names)`, { field: name });
      } else {
        filters[name] = raw;
      }
    }
    const result = await reads.listRows(policy, { filters, limit, after }, { stickyKey: stickyKey(req) });
    res.setHeader('Tandem-Read', result.store);
    res.json(result.value);
  });

  router.get('/v1/tables/:table/rows/:key', async (req, res) => {
    route(res, '/v1/tables/:table/rows/:key');
    const policy = policyOf(req, res);
    const key = parseKey(policy, rawKey(req));
    const result = await reads.getRow(policy, key, { stickyKey: stickyKey(req) });
    res.setHeader('Tandem-Read', result.store);
    if (!result.value) throw new TandemError('not_found', 404, `key: no row with this key in ${policy.name}`, { field: 'key' });
    res.json({ row: result.value });
  });

  router.patch('/v1/tables/:table/rows/:key', async (req, res) => {
    route(res, '/v1/tables/:table/rows/:key');
    const policy = policyOf(req, res);
    const key = parseKey(policy, rawKey(req));
    const values = validateValues(policy, bodyValues(req));
    sendWrite(res, await writes.write([{ op: 'update', policy, key, values, field: 'values' }], res.locals['requestId'] as string));
  });

  router.put('/v1/tables/:table/rows/:key', async (req, res) => {
    route(res, '/v1/tables/:table/rows/:key');
    const policy = policyOf(req, res);
    const key = parseKey(policy, rawKey(req));
    const values = validateValues(policy, bodyValues(req));
    sendWrite(res, await writes.write([{ op: 'upsert', policy, key, values, field: 'values' }], res.locals['requestId'] as string));
  });

  router.delete('/v1/tables/:table/rows/:key', async (req, res) => {
    route(res, '/v1/tables/:table/rows/:key');
    const policy = policyOf(req, res);
    const key = parseKey(policy, rawKey(req));
    sendWrite(res, await writes.write([{ op: 'delete', policy, key, field: 'values' }], res.locals['requestId'] as string));
  });

  router.post('/v1/batch', async (req, res) => {
    route(res, '/v1/batch');
    const body: unknown = req.body;
    const ops = (body as { ops?: unknown } | undefined)?.ops;
    if (!Array.isArray(ops) || ops.length === 0) {
      throw new TandemError('bad_request', 400, 'ops: expected a non-empty array of operations', { field: 'ops' });
    }
    if (ops.length > MAX_BATCH_OPS) {
      throw new TandemError('bad_request', 400, `ops: at most ${MAX_BATCH_OPS} operations per batch`, { field: 'ops' });
    }
    const parsed = ops.map((raw, i) => parseBatchOp(policies, raw, `ops[${i}]`));
    const outcome = await writes.write(parsed, res.locals['requestId'] as string);
    res.setHeader('Tandem-Write', outcome.disposition);
    res.setHeader('Tandem-Primary', outcome.primary);
    res.status(200).json({ results: outcome.results });
  });

  return router;
}

function parseBatchOp(policies: ReadonlyMap<string, Policy>, raw: unknown, field: string): WriteOp {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TandemError('bad_request', 400, `${field}: expected an object {op, table, key?, values?}`, { field });
  }
  const op = raw as Record<string, unknown>;
  const tableName = typeof op['table'] === 'string' ? op['table'] : '';
  const policy = policies.get(tableName);
  if (!policy) {
    throw new TandemError('unknown_table', 404, `${field}.table: no table named "${truncate(tableName)}"`, { field: `${field}.table` });
  }
  const values = () => validateValues(policy, op['values'], `${field}.values`);
  const key = () => keyFromJson(policy, op['key'], `${field}.key`);
  switch (op['op']) {
    case 'insert':
      return { op: 'insert', policy, values: values(), field: `${field}.values` };
    case 'update':
      return { op: 'update', policy, key: key(), values: values(), field: `${field}.values` };
    case 'upsert':
      return { op: 'upsert', policy, key: key(), values: values(), field: `${field}.values` };
    case 'delete':
      return { op: 'delete', policy, key: key(), field: `${field}.values` };
    default:
      throw new TandemError('bad_request', 400, `${field}.op: expected insert, update, upsert or delete`, { field: `${field}.op` });
  }
}

/** `Tandem-Sticky-Key`: the user or session a read belongs to, for sticky routing. */
function stickyKey(req: Request): string | undefined {
  const value = req.get('tandem-sticky-key');
  return value && value.length <= 256 ? value : undefined;
}

function truncate(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}
