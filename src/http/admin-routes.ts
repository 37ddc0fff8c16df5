import { Router } from 'express';
import { isOutboxId } from '../outbox/outbox-id.js';
import { TandemError } from '../errors.js';

export interface AdminApi {
  status(): Promise<unknown>;
  listDead(options: { table?: string; limit: number }): Promise<unknown[]>;
  replayDead(options: { table?: string; ids?: string[]; store?: 'source' | 'target' }): Promise<number>;
  tables(): ReadonlySet<string>;
  releaseBrake(table: string): boolean;
  verify(table: string, options: { repair?: boolean }): Promise<unknown>;
}

/** The admin API: status, dead outbox rows and their replay. */
export function adminRoutes(api: AdminApi): Router {
  const router = Router();

  router.get('/admin/status', async (_req, res) => {
    res.locals['route'] = '/admin/status';
    res.json(await api.status());
  });

  router.get('/admin/outbox', async (req, res) => {
    res.locals['route'] = '/admin/outbox';
    const status = req.query['status'] ?? 'dead';
    if (status !== 'dead') throw new TandemError('invalid_value', 400, 'status: only "dead" rows are listed', { field: 'status' });
    const table = optionalTable(api, req.query['table']);
    const limitText = req.query['limit'] ?? '100';
    if (typeof limitText !== 'string' || !/^\d+$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 1000) {
      throw new TandemError('invalid_value', 400, 'limit: expected an integer from 1 to 1000', { field: 'limit' });
    }
    res.json({ rows: await api.listDead({ ...(table ? { table } : {}), limit: Number(limitText) }) });
  });

  router.post('/admin/outbox/replay', async (req, res) => {
    res.locals['route'] = '/admin/outbox/replay';
    // JSON only: a form-encoded body would parse to nothing, and "nothing" would replay every dead row.
    if (!req.is('application/json')) {
      throw new TandemError('unsupported_media_type', 415, 'body: send JSON (Content-Type: application/json), e.g. {"ids":["12"]} or {"table":"users"}', { field: 'body' });
    }
    const body = (req.body ?? {}) as { table?: unknown; ids?: unknown; store?: unknown };
    if (typeof body !== 'object' || Array.isArray(body)) throw new TandemError('invalid_value', 400, 'body: expected a JSON object', { field: 'body' });
    const table = optionalTable(api, body.table);
    let ids: string[] | undefined;
    if (body.ids !== undefined) {
      if (!Array.isArray(body.ids) || body.ids.length === 0 || body.ids.length > 1000) {
        throw new TandemError('invalid_value', 400, 'ids: expected an array of 1 to 1000 outbox row ids', { field: 'ids' });
      }
      const bad = body.ids.findIndex((id) => !isOutboxId(id));
      if (bad >= 0) throw new TandemError('invalid_value', 400, `ids[${bad}]: expected an outbox row id (an integer from 1 to 9223372036854775807)`, { field: `ids[${bad}]` });
      ids = body.ids.map(String);
    }
    // Outbox ids are per store: after a cutover the target's outbox has ids of its own.
    if (body.store !== undefined && body.store !== 'source' && body.store !== 'target') {
      throw new TandemError('invalid_value', 400, 'store: expected "source" or "target" (the store whose outbox holds the rows, as `store` in GET /admin/outbox)', { field: 'store' });
    }
    const store = body.store as 'source' | 'target' | undefined;
    const replayed = await api.replayDead({ ...(table ? { table } : {}), ...(ids ? { ids } : {}), ...(store ? { store } : {}) });
    res.json({ replayed });
  });

  router.post('/admin/tables/:table/brake/release', (req, res) => {
    res.locals['route'] = '/admin/tables/:table/brake/release';
    const table = optionalTable(api, req.params['table']) as string;
    res.json({ table, released: api.releaseBrake(table) });
  });

  router.post('/admin/tables/:table/verify', async (req, res) => {
    res.locals['route'] = '/admin/tables/:table/verify';
    const table = optionalTable(api, req.params['table']) as string;
    const body = (req.body ?? {}) as { repair?: unknown };
    if (body.repair !== undefined && typeof body.repair !== 'boolean') {
      throw new TandemError('invalid_value', 400, 'repair: expected true or false', { field: 'repair' });
    }
    const report = (await api.verify(table, { repair: body.repair === true })) as { differingKeys?: unknown };
    const { differingKeys: _keys, ...rest } = report;
    res.status(200).json(rest);
  });

  return router;
}

function optionalTable(api: AdminApi, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !api.tables().has(value)) {
    throw new TandemError('unknown_table', 404, `table: no table named "${String(value).slice(0, 64)}"`, { field: 'table' });
  }
  return value;
}
