import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** Child-process tests run the built CLI: build it once before any test file. */
export function setup(): void {
  const root = path.resolve(import.meta.dirname, '..');
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  // The console's front end (served from dist/console by the in-process and child Tandems).
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build-console.mjs'), '--quiet'], { cwd: root, stdio: 'inherit' });
  for (const [name, variable] of [
    ['PostgreSQL', 'TANDEM_TEST_PG_URL'],
    ['MariaDB/MySQL', 'TANDEM_TEST_MYSQL_URL'],
  ] as const) {
    if (!process.env[variable]) console.warn(`[tandem tests] NOTICE: ${variable} is not set: suites on ${name} will be SKIPPED`);
  }
}
