import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ZodIssue } from 'zod';
import { TandemError } from '../errors.js';
import { configSchema, type TandemConfig } from './schema.js';

type Json = Record<string, unknown>;

/** Environment variable → config path. The only place (with the CLI) that reads `process.env`. */
export const ENV_NAMES = {
  TANDEM_SOURCE_URL: ['source', 'url'],
  TANDEM_TARGET_URL: ['target', 'url'],
  TANDEM_POLICIES_DIR: ['policiesDir'],
  TANDEM_FLAGS_FILE: ['flags', 'file'],
  TANDEM_UNLEASH_URL: ['flags', 'unleashUrl'],
  TANDEM_UNLEASH_TOKEN: ['flags', 'unleashToken'],
  TANDEM_FLAGS_REFRESH_MS: ['flags', 'refreshIntervalMs'],
  TANDEM_HOST: ['http', 'host'],
  TANDEM_PORT: ['http', 'port'],
  TANDEM_API_TOKENS: ['http', 'apiTokens'],
  TANDEM_ADMIN_TOKEN: ['http', 'adminToken'],
  TANDEM_BODY_LIMIT: ['http', 'bodyLimit'],
  TANDEM_STATEMENT_TIMEOUT_MS: ['db', 'statementTimeoutMs'],
  TANDEM_POOL_MAX: ['db', 'poolMax'],
  TANDEM_APPLY_TIMEOUT_MS: ['apply', 'timeoutMs'],
  TANDEM_OUTBOX_MAX_ATTEMPTS: ['outbox', 'maxAttempts'],
  TANDEM_LOG_LEVEL: ['log', 'level'],
  TANDEM_WORKERS: ['workers'],
  TANDEM_CUTOVER_HOLD_MS: ['cutover', 'holdMs'],
  TANDEM_CUTOVER_PAUSE_AT: ['cutover', 'pauseAtStep'],
  TANDEM_CUTOVER_PAUSE_MS: ['cutover', 'pauseMs'],
  TANDEM_SQL_PORT: ['sql', 'port'],
  TANDEM_SQL_HOST: ['sql', 'host'],
  TANDEM_SQL_USERS: ['sql', 'users'],
  TANDEM_SQL_TLS_CERT: ['sql', 'tls', 'cert'],
  TANDEM_SQL_TLS_KEY: ['sql', 'tls', 'key'],
} as const satisfies Record<string, readonly string[]>;

const NUMERIC_PATHS = new Set([
  'flags.refreshIntervalMs',
  'http.port',
  'db.statementTimeoutMs',
  'db.poolMax',
  'apply.timeoutMs',
  'outbox.maxAttempts',
  'cutover.holdMs',
  'cutover.pauseMs',
  'workers',
  'sql.port',
]);
const LIST_PATHS = new Set(['http.apiTokens']);

export interface LoadConfigOptions {
  /** Folder holding default.yaml and local.yaml. Default: `$TANDEM_CONFIG_DIR` or `./config`. */
  configDir?: string;
  /** Environment to read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Highest-precedence overrides (CLI flags), as a partial config object. */
  overrides?: Json;
  /** Folder relative paths resolve against. Default: `process.cwd()`. */
  cwd?: string;
}

/**
 * Loads `default.yaml` → `local.yaml` → environment → overrides, validates once and freezes.
 * Every problem is reported in one `config_invalid` error naming the variable or key.
 */
export function loadConfig(options: LoadConfigOptions = {}): Readonly<TandemConfig> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const configDir = path.resolve(cwd, options.configDir ?? env['TANDEM_CONFIG_DIR'] ?? 'config');
  const problems: string[] = [];
  const origin = new Map<string, string>();

  let merged: Json = {};
  for (const name of ['default.yaml', 'local.yaml']) {
    const file = path.join(configDir, name);
    if (!existsSync(file)) continue;
    try {
      const parsed: unknown = parseYaml(readFileSync(file, 'utf8'));
      if (parsed === null || parsed === undefined) continue;
      if (typeof parsed !== 'object' || Array.isArray(parsed)) {
        problems.push(`${file}: must be a mapping of settings`);
        continue;
      }
      merged = deepMerge(merged, parsed as Json);
      for (const key of leafPaths(parsed as Json)) origin.set(key, `${name}: ${key}`);
    } catch (error) {
      problems.push(`${file}: ${(error as Error).message}`);
    }
  }

  for (const [name, keyPath] of Object.entries(ENV_NAMES)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const dotted = keyPath.join('.');
    let value: unknown = raw;
    if (NUMERIC_PATHS.has(dotted)) {
      value = /^-?\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : raw;
    } else if (dotted === 'sql.users') {
      // `name:password,name2:password2` (a password may hold ':' but not ',').
      value = raw.split(',').map((t) => t.trim()).filter((t) => t.length > 0).map((t) => {
        const at = t.indexOf(':');
        return at < 0 ? { name: t, password: '' } : { name: t.slice(0, at), password: t.slice(at + 1) };
      });
    } else if (LIST_PATHS.has(dotted)) {
      value = raw.split(',').map((t) => t.trim()).filter((t) => t.length > 0);
    }
    merged = setPath(merged, keyPath, value);
    origin.set(dotted, name);
  }

  if (options.overrides) {
    merged = deepMerge(merged, options.overrides);
    for (const key of leafPaths(options.overrides)) origin.set(key, `--${key}`);
  }

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(describeIssue(issue, origin));
  }
  // Checked on the raw value too, so this problem is listed with all the others.
  const http = (merged['http'] ?? {}) as Record<string, unknown>;
  const host = typeof http['host'] === 'string' ? http['host'] : '127.0.0.1';
  const tokens = Array.isArray(http['apiTokens']) ? http['apiTokens'] : [];
  if (tokens.length === 0 && !isLoopback(host)) {
    problems.push(
      `${origin.get('http.host') ?? 'http.host'}: refusing to listen on ${host} without API tokens; ` +
        'set TANDEM_API_TOKENS (and TANDEM_ADMIN_TOKEN) or listen on 127.0.0.1',
    );
  }
  const sql = (merged['sql'] ?? {}) as Record<string, unknown>;
  const sqlHost = typeof sql['host'] === 'string' ? sql['host'] : '127.0.0.1';
  const sqlUsers = Array.isArray(sql['users']) ? sql['users'] : [];
  if (sql['port'] !== undefined && sqlUsers.length === 0 && !isLoopback(sqlHost)) {
    problems.push(
      `${origin.get('sql.host') ?? 'sql.host'}: refusing to serve SQL on ${sqlHost} without users; ` +
        'set TANDEM_SQL_USERS (name:password) or listen on 127.0.0.1',
    );
  }
  if (problems.length > 0 || !result.success) {
    throw new TandemError('config_invalid', 500, `Invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }

  const config = result.data;
  config.policiesDir = path.resolve(cwd, config.policiesDir);
  config.flags.file = path.resolve(cwd, config.flags.file);
  if (config.sql.tls) {
    config.sql.tls.cert = path.resolve(cwd, config.sql.tls.cert);
    config.sql.tls.key = path.resolve(cwd, config.sql.tls.key);
  }
  config.source.url = resolveSqlitePath(config.source.url, cwd);
  config.target.url = resolveSqlitePath(config.target.url, cwd);
  return deepFreeze(config);
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function resolveSqlitePath(url: string, cwd: string): string {
  const match = /^sqlite:(?:\/\/)?(.*)$/i.exec(url);
  if (!match) return url;
  const file = match[1] ?? '';
  if (file === ':memory:') return url;
  return `sqlite:${path.resolve(cwd, file)}`;
}

function describeIssue(issue: ZodIssue, origin: Map<string, string>): string {
  const dotted = issue.path.join('.');
  let where = origin.get(dotted);
  if (!where) {
    // An issue on a list element or an unknown key: name the closest thing we know.
    for (const [key, from] of origin) if (dotted.startsWith(`${key}.`)) where = from;
  }
  const label = where && where !== dotted ? `${where} (${dotted})` : dotted || '(root)';
  if (issue.code === 'unrecognized_keys') {
    return issue.keys
      .map((k) => {
        const full = dotted ? `${dotted}.${k}` : k;
        const from = origin.get(full);
        return `${from && from !== full ? `${from} (${full})` : full}: unknown setting`;
      })
      .join('; ');
  }
  return `${label}: ${issue.message}`;
}

function leafPaths(obj: Json, prefix = ''): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(obj)) {
    const dotted = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) out.push(...leafPaths(value as Json, dotted));
    else out.push(dotted);
  }
  return out;
}

function setPath(obj: Json, keyPath: readonly string[], value: unknown): Json {
  const [head, ...rest] = keyPath;
  if (head === undefined) return obj;
  if (rest.length === 0) return { ...obj, [head]: value };
  const child = obj[head];
  const next = child !== null && typeof child === 'object' && !Array.isArray(child) ? (child as Json) : {};
  return { ...obj, [head]: setPath(next, rest, value) };
}

function deepMerge(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key];
    if (isPlainObject(value) && isPlainObject(prev)) out[key] = deepMerge(prev, value);
    else out[key] = value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
