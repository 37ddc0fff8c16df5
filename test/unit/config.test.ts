import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { catchTandemError } from '../helpers/errors.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/load-config.js';

const REPO_CONFIG_DIR = path.resolve(import.meta.dirname, '../../config');

let root: string;
let configDir: string;
let cwd: string;

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'tandem-config-'));
  configDir = path.join(root, 'config');
  cwd = path.join(root, 'work');
  mkdirSync(configDir);
  mkdirSync(cwd);
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function writeConfig(name: 'default.yaml' | 'local.yaml', text: string): void {
  writeFileSync(path.join(configDir, name), text);
}

describe('loadConfig defaults', () => {
  it('fills every documented default when no file, variable or override is given', () => {
    const config = loadConfig({ configDir, env: {}, cwd });

    expect(config.http).toEqual({
      host: '127.0.0.1',
      port: 8080,
      bodyLimit: '1mb',
      apiTokens: [],
      requestTimeoutMs: 30_000,
      requestDeadlineMs: 15_000,
      maxJsonDepth: 64,
    });
    expect(config.http.adminToken).toBeUndefined();
    expect(config.source.url).toBe(`sqlite:${path.join(cwd, 'data/source.db')}`);
    expect(config.target.url).toBe(`sqlite:${path.join(cwd, 'data/target.db')}`);
    expect(config.policiesDir).toBe(path.join(cwd, 'policies'));
    expect(config.flags.file).toBe(path.join(cwd, 'config/flags.yaml'));
    expect(config.flags.unleashUrl).toBeUndefined();
    expect(config.flags.refreshIntervalMs).toBe(1000);
    expect(config.db).toEqual({ statementTimeoutMs: 10_000, poolMax: 10, acquireTimeoutMs: 5_000, connectTimeoutMs: 3_000 });
    expect(config.apply.timeoutMs).toBe(1_000);
    expect(config.outbox.maxAttempts).toBe(20);
    expect(config.outbox.backoffBaseMs).toBe(200);
    expect(config.outbox.backoffMaxMs).toBe(30_000);
    expect(config.log.level).toBe('info');
  });

  it("the repository's config/default.yaml only repeats the schema defaults", () => {
    const fromRepoFile = loadConfig({ configDir: REPO_CONFIG_DIR, env: {}, cwd });
    const fromSchema = loadConfig({ configDir, env: {}, cwd });
    expect(fromRepoFile).toEqual(fromSchema);
  });

  it('finds the config folder through TANDEM_CONFIG_DIR, relative to cwd, when no configDir is given', () => {
    writeConfig('default.yaml', 'http:\n  port: 1234\n');
    const config = loadConfig({ env: { TANDEM_CONFIG_DIR: '../config' }, cwd });
    expect(config.http.port).toBe(1234);
  });

  it('ignores an empty YAML file', () => {
    writeConfig('default.yaml', '# nothing but a comment\n');
    expect(loadConfig({ configDir, env: {}, cwd }).http.port).toBe(8080);
  });
});

describe('loadConfig precedence: default.yaml → local.yaml → environment → overrides', () => {
  beforeEach(() => {
    writeConfig(
      'default.yaml',
      ['http:', '  port: 1001', '  bodyLimit: 2mb', 'db:', '  poolMax: 3', 'log:', '  level: warn', ''].join('\n'),
    );
  });

  it('takes default.yaml over the schema defaults', () => {
    const config = loadConfig({ configDir, env: {}, cwd });
    expect(config.http.port).toBe(1001);
    expect(config.http.bodyLimit).toBe('2mb');
    expect(config.db.poolMax).toBe(3);
    expect(config.log.level).toBe('warn');
  });

  it('takes local.yaml over default.yaml, merging nested sections key by key', () => {
    writeConfig('local.yaml', 'http:\n  port: 1002\n');
    const config = loadConfig({ configDir, env: {}, cwd });
    expect(config.http.port).toBe(1002);
    // Siblings from default.yaml survive the nested merge.
    expect(config.http.bodyLimit).toBe('2mb');
    expect(config.db.poolMax).toBe(3);
  });

  it('takes the environment over local.yaml', () => {
    writeConfig('local.yaml', 'http:\n  port: 1002\ndb:\n  poolMax: 4\n');
    const config = loadConfig({ configDir, env: { TANDEM_PORT: '1003', TANDEM_LOG_LEVEL: 'debug' }, cwd });
    expect(config.http.port).toBe(1003);
    expect(config.log.level).toBe('debug');
    expect(config.db.poolMax).toBe(4);
  });

  it('takes overrides over the environment', () => {
    writeConfig('local.yaml', 'http:\n  port: 1002\n');
    const config = loadConfig({
      configDir,
      env: { TANDEM_PORT: '1003', TANDEM_POOL_MAX: '7' },
      overrides: { http: { port: 1004 } },
      cwd,
    });
    expect(config.http.port).toBe(1004);
    expect(config.http.bodyLimit).toBe('2mb');
    expect(config.db.poolMax).toBe(7);
  });

  it('treats an empty environment variable as unset', () => {
    const config = loadConfig({ configDir, env: { TANDEM_PORT: '' }, cwd });
    expect(config.http.port).toBe(1001);
  });

  it('parses numeric variables as numbers', () => {
    const config = loadConfig({ configDir, env: { TANDEM_OUTBOX_MAX_ATTEMPTS: '5', TANDEM_APPLY_TIMEOUT_MS: '250' }, cwd });
    expect(config.outbox.maxAttempts).toBe(5);
    expect(config.apply.timeoutMs).toBe(250);
  });
});

describe('loadConfig errors', () => {
  it('reports TANDEM_PORT=abc and TANDEM_SOURCE_URL=ftp://x together in one config_invalid error', () => {
    const error = catchTandemError(() =>
      loadConfig({ configDir, env: { TANDEM_PORT: 'abc', TANDEM_SOURCE_URL: 'ftp://x' }, cwd }),
    );
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('TANDEM_PORT');
    expect(error.message).toContain('TANDEM_SOURCE_URL');
  });

  it('never falls back silently on a bad number (port out of range, fractional port)', () => {
    expect(catchTandemError(() => loadConfig({ configDir, env: { TANDEM_PORT: '70000' }, cwd })).message).toContain(
      'TANDEM_PORT',
    );
    expect(catchTandemError(() => loadConfig({ configDir, env: { TANDEM_PORT: '80.5' }, cwd })).message).toContain(
      'TANDEM_PORT',
    );
  });

  it('refuses an unknown top-level key in YAML, naming the key', () => {
    writeConfig('default.yaml', 'colour: red\n');
    const error = catchTandemError(() => loadConfig({ configDir, env: {}, cwd }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('colour');
  });

  it('refuses an unknown nested key in YAML, naming its full path', () => {
    writeConfig('local.yaml', 'http:\n  hots: 0.0.0.0\n');
    const error = catchTandemError(() => loadConfig({ configDir, env: {}, cwd }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('http.hots');
  });

  it('names the file an unknown key came from', () => {
    // load-config.ts describeIssue: "An issue on a list element or an unknown key: name the closest thing we know".
    writeConfig('local.yaml', 'http:\n  hots: 0.0.0.0\n');
    const error = catchTandemError(() => loadConfig({ configDir, env: {}, cwd }));
    expect(error.message).toContain('local.yaml');
  });

  it('reports a YAML file that is not a mapping, naming the file', () => {
    writeConfig('local.yaml', '- a\n- b\n');
    const error = catchTandemError(() => loadConfig({ configDir, env: {}, cwd }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain(path.join(configDir, 'local.yaml'));
    expect(error.message).toContain('must be a mapping');
  });

  it('reports malformed YAML, naming the file', () => {
    writeConfig('default.yaml', 'http: [unclosed\n');
    const error = catchTandemError(() => loadConfig({ configDir, env: {}, cwd }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain(path.join(configDir, 'default.yaml'));
  });

  it('lists problems from YAML and from the environment in one error', () => {
    writeConfig('default.yaml', 'colour: red\n');
    const error = catchTandemError(() => loadConfig({ configDir, env: { TANDEM_PORT: 'abc' }, cwd }));
    expect(error.message).toContain('colour');
    expect(error.message).toContain('TANDEM_PORT');
  });

  it('names TANDEM_API_TOKENS when one of its tokens is too short', () => {
    const error = catchTandemError(() => loadConfig({ configDir, env: { TANDEM_API_TOKENS: 'long-enough-token,short' }, cwd }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('TANDEM_API_TOKENS');
    expect(error.message).toContain('at least 8 characters');
  });
});

describe('loadConfig listen address and API tokens', () => {
  it('refuses TANDEM_HOST=0.0.0.0 without TANDEM_API_TOKENS, naming the variable', () => {
    const error = catchTandemError(() => loadConfig({ configDir, env: { TANDEM_HOST: '0.0.0.0' }, cwd }));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('TANDEM_HOST');
    expect(error.message).toContain('TANDEM_API_TOKENS');
  });

  it('refuses a non-loopback host whose token list is only separators', () => {
    const error = catchTandemError(() =>
      loadConfig({ configDir, env: { TANDEM_HOST: '0.0.0.0', TANDEM_API_TOKENS: ' , ,' }, cwd }),
    );
    expect(error.code).toBe('config_invalid');
  });

  it('accepts TANDEM_HOST=0.0.0.0 with TANDEM_API_TOKENS', () => {
    const config = loadConfig({ configDir, env: { TANDEM_HOST: '0.0.0.0', TANDEM_API_TOKENS: 'token-one-123' }, cwd });
    expect(config.http.host).toBe('0.0.0.0');
    expect(config.http.apiTokens).toEqual(['token-one-123']);
  });

  it.each(['127.0.0.1', '127.1.2.3', 'localhost', '::1'])('accepts loopback host %s without tokens', (host) => {
    expect(loadConfig({ configDir, env: { TANDEM_HOST: host }, cwd }).http.host).toBe(host);
  });

  it('splits TANDEM_API_TOKENS on commas, trimming blanks and dropping empty entries', () => {
    const config = loadConfig({
      configDir,
      env: { TANDEM_API_TOKENS: ' alpha-token-1 ,beta-token-2,, gamma-token-3 ,' },
      cwd,
    });
    expect(config.http.apiTokens).toEqual(['alpha-token-1', 'beta-token-2', 'gamma-token-3']);
  });

  it('reports a bad port and a refused host in the same error', () => {
    // DESIGN §8 / loadConfig's contract: "one error message lists every problem".
    const error = catchTandemError(() => loadConfig({ configDir, env: { TANDEM_HOST: '0.0.0.0', TANDEM_PORT: 'abc' }, cwd }));
    expect(error.message).toContain('TANDEM_PORT');
    expect(error.message).toContain('TANDEM_HOST');
  });
});

describe('loadConfig result', () => {
  it('is frozen all the way down', () => {
    const config = loadConfig({ configDir, env: { TANDEM_API_TOKENS: 'token-one-123' }, cwd });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.http)).toBe(true);
    expect(Object.isFrozen(config.http.apiTokens)).toBe(true);
    expect(Object.isFrozen(config.outbox)).toBe(true);
    // ESM test files run in strict mode: writes to frozen objects throw.
    expect(() => {
      (config.http as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.http.apiTokens as string[]).push('another-token');
    }).toThrow(TypeError);
    expect(config.http.port).toBe(8080);
  });

  it('resolves relative sqlite paths against cwd, in both URL spellings', () => {
    const config = loadConfig({
      configDir,
      env: { TANDEM_SOURCE_URL: 'sqlite:db/src.db', TANDEM_TARGET_URL: 'sqlite://db/tgt.db' },
      cwd,
    });
    expect(config.source.url).toBe(`sqlite:${path.join(cwd, 'db/src.db')}`);
    expect(config.target.url).toBe(`sqlite:${path.join(cwd, 'db/tgt.db')}`);
  });

  it('keeps absolute sqlite paths, :memory: and server URLs unchanged', () => {
    const absolute = path.join(root, 'abs.db');
    const config = loadConfig({
      configDir,
      env: { TANDEM_SOURCE_URL: `sqlite:${absolute}`, TANDEM_TARGET_URL: 'sqlite::memory:' },
      cwd,
    });
    expect(config.source.url).toBe(`sqlite:${absolute}`);
    expect(config.target.url).toBe('sqlite::memory:');

    const servers = loadConfig({
      configDir,
      env: { TANDEM_SOURCE_URL: 'postgres://u:p@db:5432/app', TANDEM_TARGET_URL: 'mysql://u:p@db:3306/app' },
      cwd,
    });
    expect(servers.source.url).toBe('postgres://u:p@db:5432/app');
    expect(servers.target.url).toBe('mysql://u:p@db:3306/app');
  });

  it('resolves policiesDir and the flag file against cwd; absolute ones stay', () => {
    const relative = loadConfig({ configDir, env: { TANDEM_POLICIES_DIR: 'my/policies', TANDEM_FLAGS_FILE: 'f.yaml' }, cwd });
    expect(relative.policiesDir).toBe(path.join(cwd, 'my/policies'));
    expect(relative.flags.file).toBe(path.join(cwd, 'f.yaml'));

    const absoluteDir = path.join(root, 'elsewhere');
    const absolute = loadConfig({ configDir, env: { TANDEM_POLICIES_DIR: absoluteDir }, cwd });
    expect(absolute.policiesDir).toBe(absoluteDir);
  });
});
