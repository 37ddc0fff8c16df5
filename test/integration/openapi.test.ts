import SwaggerParser from '@apidevtools/swagger-parser';
import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { startTandem, type TandemHarness } from '../helpers/tandem.js';

/**
 * `/openapi.json` validates with a maintained validator, and every route the express app
 * serves is in it (the router is walked, so a new route without documentation fails here).
 */

interface Layer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
  name?: string;
  matchers?: unknown[];
  slash?: boolean;
  path?: string;
}

/** Every (method, path) of the app, with express `:param` turned into OpenAPI `{param}`. */
function servedRoutes(app: Express): Array<{ method: string; path: string }> {
  const out: Array<{ method: string; path: string }> = [];
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const p of paths) {
          for (const [method, on] of Object.entries(layer.route.methods)) {
            if (on && method !== '_all') out.push({ method, path: `${prefix}${p}`.replace(/:(\w+)/g, '{$1}') });
          }
        }
      } else if (layer.name === 'router' && layer.handle?.stack) {
        walk(layer.handle.stack, prefix);
      } else if (layer.name === 'serveStatic') {
        out.push({ method: 'get', path: '/console/assets/{file}' });
      }
    }
  };
  const router = (app as unknown as { router: { stack: Layer[] } }).router;
  walk(router.stack, '');
  return out;
}

describe('OpenAPI document', () => {
  let source: TestDatabase;
  let target: TestDatabase;
  let tandem: TandemHarness;

  beforeAll(async () => {
    source = await createTestDatabase('sqlite', 'oasrc');
    target = await createTestDatabase('sqlite', 'oatgt');
    await createTestTables(source.knex, target.knex);
    tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies() });
  });

  afterAll(async () => {
    await tandem?.stop();
    await source?.drop();
    await target?.drop();
  });

  it('is served at /openapi.json and validates', async () => {
    const res = await tandem.request.get('/openapi.json').expect(200);
    expect(res.body.openapi).toBe('3.0.3');
    // validate() dereferences in place: give it a copy.
    const api = await SwaggerParser.validate(structuredClone(res.body));
    expect(api.info.title).toBe('Tandem');
    // The validator is not a rubber stamp: an operation without responses is refused.
    const broken = structuredClone(res.body) as { paths: Record<string, Record<string, Record<string, unknown>>> };
    delete broken.paths['/admin/status']?.['get']?.['responses'];
    await expect(SwaggerParser.validate(broken as unknown as Parameters<typeof SwaggerParser.validate>[0])).rejects.toThrow(/responses/);
  });

  it('documents every route the app serves, with its method', async () => {
    const doc = (await tandem.request.get('/openapi.json').expect(200)).body as { paths: Record<string, Record<string, unknown>> };
    const routes = servedRoutes(tandem.app.http);
    expect(routes.length).toBeGreaterThan(20);
    const missing = routes.filter((r) => !doc.paths[r.path]?.[r.method]).map((r) => `${r.method.toUpperCase()} ${r.path}`);
    expect(missing).toEqual([]);
    // And nothing documented that the app does not serve.
    const served = new Set(routes.map((r) => `${r.method} ${r.path}`));
    const extra: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of Object.keys(item)) if (method !== 'parameters' && !served.has(`${method} ${path}`)) extra.push(`${method.toUpperCase()} ${path}`);
    }
    expect(extra).toEqual([]);
  });
});
