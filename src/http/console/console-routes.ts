import { existsSync } from 'node:fs';
import path from 'node:path';
import express, { Router, type Request } from 'express';
import { TandemError } from '../../errors.js';
import { setFlagInFile } from '../../flags/set-flag-in-file.js';
import { flagNames, KILL_SWITCH_FLAG } from '../../flags/resolve-stage.js';
import { JOB_KINDS, type JobKind } from '../../jobs/job-registry.js';
import { describeFlags, type ConsoleApi } from './console-api.js';

/**
 * The built front end (`npm run build` bundles `console/` here with esbuild). Resolved from
 * the repository root, so it is the same folder whether the server runs from `src/` (tests)
 * or `dist/`.
 */
export const CONSOLE_ASSETS = path.resolve(import.meta.dirname, '..', '..', '..', 'dist', 'console');

/** Content-Security-Policy of the console: everything from Tandem itself, nothing inline to run. */
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/**
 * Routes an open console polls every few seconds: their request lines are logged at debug,
 * not info, so a tab left open does not fill the log (they are still counted in metrics).
 */
export const POLLED_ROUTES: ReadonlySet<string> = new Set([
  '/admin/status',
  '/admin/flags',
  '/admin/jobs',
  '/admin/jobs/:id',
  '/admin/tables/:table/history',
  '/admin/outbox',
  '/console/assets',
]);

/** The page and its assets (public: the page is a sign-in form until a token is given). */
export function consolePageRoutes(): Router {
  const router = Router();
  const page = (_req: Request, res: express.Response) => {
    res.locals['route'] = '/console';
    if (!existsSync(path.join(CONSOLE_ASSETS, 'console.js'))) {
      throw new TandemError('not_found', 404, 'console: the front end is not built (run `npm run build`)', { field: 'path' });
    }
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cache-Control', 'no-store');
    res.type('html').send(PAGE);
  };
  router.get('/console', page);
  router.use(
    '/console/assets',
    (_req, res, next) => {
      res.locals['route'] = '/console/assets';
      res.setHeader('Content-Security-Policy', CSP);
      res.setHeader('X-Content-Type-Options', 'nosniff');
      next();
    },
    express.static(CONSOLE_ASSETS, { index: false, fallthrough: true, maxAge: 0 }),
  );
  return router;
}

/** Admin endpoints the console (and scripts) use: history, jobs, flags, capabilities. */
export function consoleAdminRoutes(api: ConsoleApi): Router {
  const router = Router();
  const tableParam = (req: Request): string => {
    const table = String(req.params['table'] ?? '');
    if (!api.tables().has(table)) throw new TandemError('unknown_table', 404, `table: no table named "${table.slice(0, 64)}"`, { field: 'table' });
    return table;
  };

  router.get('/admin/capabilities', (_req, res) => {
    res.locals['route'] = '/admin/capabilities';
    res.json({ ...api.capabilities, flagsEditable: api.flags.origin === 'file', jobs: JOB_KINDS });
  });

  router.get('/admin/tables/:table/history', (req, res) => {
    res.locals['route'] = '/admin/tables/:table/history';
    res.json(api.history.history(tableParam(req)));
  });

  router.post('/admin/tables/:table/jobs', (req, res) => {
    res.locals['route'] = '/admin/tables/:table/jobs';
    const table = tableParam(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (typeof body !== 'object' || Array.isArray(body)) throw new TandemError('bad_request', 400, 'body: expected a JSON object {"kind": …}', { field: 'body' });
    const kind = body['kind'];
    if (typeof kind !== 'string' || !(JOB_KINDS as readonly string[]).includes(kind)) {
      throw new TandemError('invalid_value', 400, `kind: expected one of ${JOB_KINDS.join(', ')}`, { field: 'kind' });
    }
    const bool = (name: string): boolean => {
      const value = body[name];
      if (value === undefined) return false;
      if (typeof value !== 'boolean') throw new TandemError('invalid_value', 400, `${name}: expected true or false`, { field: name });
      return value;
    };
    const positive = (name: string): number | undefined => {
      const value = body[name];
      if (value === undefined) return undefined;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 10_000_000) {
        throw new TandemError('invalid_value', 400, `${name}: expected an integer from 1 to 10000000`, { field: name });
      }
      return value;
    };
    const allowed = kind === 'verify' ? ['kind', 'repair'] : ['kind', 'rate', 'chunk', 'restart'];
    for (const name of Object.keys(body)) {
      if (!allowed.includes(name)) throw new TandemError('invalid_value', 400, `${name}: not an option of ${kind} (options: ${allowed.slice(1).join(', ')})`, { field: name });
    }
    let job;
    if ((kind as JobKind) === 'verify') {
      const repair = bool('repair');
      job = api.jobs.start('verify', table, { repair }, async (ctx) => {
        // Every differing key is for --repair only: the job keeps the counts and samples.
        const { differingKeys: _keys, ...report } = (await api.verify(table, { repair, onProgress: ctx.progress })) as { differingKeys?: unknown };
        return report;
      });
    } else {
      const rate = positive('rate');
      const chunkSize = positive('chunk');
      const restart = bool('restart');
      job = api.jobs.start('backfill', table, { ...(rate ? { rate } : {}), ...(chunkSize ? { chunk: chunkSize } : {}), restart }, (ctx) =>
        api.backfill(table, {
          ...(rate ? { rate } : {}),
          ...(chunkSize ? { chunkSize } : {}),
          restart,
          shouldStop: ctx.shouldStop,
          onProgress: (p) =>
            ctx.progress({ phase: 'copy', done: p.copied + p.skipped, total: p.total, rowsPerSecond: p.rowsPerSecond, etaSeconds: p.etaSeconds }),
        }),
      );
    }
    res.status(202).setHeader('Location', `/admin/jobs/${job.id}`).json(job);
  });

  router.get('/admin/jobs', (_req, res) => {
    res.locals['route'] = '/admin/jobs';
    res.json({ jobs: api.jobs.list() });
  });

  router.get('/admin/jobs/:id', (req, res) => {
    res.locals['route'] = '/admin/jobs/:id';
    const job = api.jobs.get(String(req.params['id']));
    if (!job) throw new TandemError('not_found', 404, 'id: no job with this id (finished jobs are kept for a while, then forgotten)', { field: 'id' });
    res.json(job);
  });

  router.post('/admin/jobs/:id/stop', (req, res) => {
    res.locals['route'] = '/admin/jobs/:id/stop';
    const id = String(req.params['id']);
    if (!api.jobs.get(id)) throw new TandemError('not_found', 404, 'id: no job with this id', { field: 'id' });
    res.json({ id, stopping: api.jobs.stop(id) });
  });

  router.get('/admin/flags', (_req, res) => {
    res.locals['route'] = '/admin/flags';
    res.json(describeFlags(api));
  });

  router.put('/admin/flags/:name', (req, res) => {
    res.locals['route'] = '/admin/flags/:name';
    const name = String(req.params['name']);
    if (api.flags.origin !== 'file') {
      throw new TandemError('conflict', 409, 'name: flags come from Unleash; change them in the Unleash UI', { field: 'name' });
    }
    const known = new Map<string, 'switch' | 'percent'>([[KILL_SWITCH_FLAG, 'switch']]);
    for (const table of api.tables()) {
      const n = flagNames(table);
      for (const f of [n.dualWrite, n.targetPrimary, n.retireSource]) known.set(f, 'switch');
      for (const f of [n.readTarget, n.shadowRead]) known.set(f, 'percent');
    }
    const kind = known.get(name);
    if (!kind) throw new TandemError('not_found', 404, `name: "${name.slice(0, 64)}" is not a Tandem flag of a known table`, { field: 'name' });
    const body = (req.body ?? {}) as { value?: unknown };
    const value = body.value;
    let setting: string;
    if (kind === 'switch') {
      if (typeof value !== 'boolean') throw new TandemError('invalid_value', 400, 'value: expected true or false for an on/off flag', { field: 'value' });
      setting = value ? 'on' : 'off';
    } else {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 100) {
        throw new TandemError('invalid_value', 400, 'value: expected an integer percentage from 0 to 100', { field: 'value' });
      }
      setting = value === 0 ? 'off' : String(value);
    }
    const written = setFlagInFile(api.flagsFile, name, setting);
    res.json({ ...written, file: api.flagsFile });
  });

  return router;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tandem console</title>
<link rel="stylesheet" href="/console/assets/console.css">
</head>
<body>
<noscript>The Tandem console needs JavaScript. The same information is at /admin/status.</noscript>
<div id="app"></div>
<script type="module" src="/console/assets/console.js"></script>
</body>
</html>
`;
