// @ts-check
import path from 'node:path';
import js from '@eslint/js';
import boundaries from 'eslint-plugin-boundaries';
import tseslint from 'typescript-eslint';

/**
 * Layers of src/ (DESIGN §10), top to bottom. A layer may import the layers listed for it and
 * its own files, nothing above it and no sibling: an upward import fails `npm run lint`.
 * `shared` (src/shared/, errors.ts, events.ts) is the bottom: types and pure helpers.
 */
const LOWER = {
  shared: [],
  config: ['shared'],
  metrics: ['shared'],
  db: ['config', 'shared'],
  policy: ['db', 'config', 'shared'],
  flags: ['db', 'config', 'shared'],
  outbox: ['db', 'policy', 'flags', 'config', 'shared'],
  // Event history and background jobs (the console's): fed by events, above nothing but the vocabularies.
  history: ['shared'],
  jobs: ['shared'],
};
const DOMAIN = ['outbox', 'db', 'policy', 'flags', 'config', 'shared'];
const LAYERS = {
  ...LOWER,
  write: DOMAIN,
  read: DOMAIN,
  consistency: DOMAIN,
  cutover: DOMAIN,
  // The fronts: the HTTP API and the SQL front sit side by side above the domain.
  http: ['write', 'read', 'consistency', 'cutover', 'history', 'jobs', ...DOMAIN],
  sql: ['write', 'read', 'consistency', 'cutover', ...DOMAIN],
  // The composition root and the CLI wire everything.
  top: ['http', 'sql', 'write', 'read', 'consistency', 'cutover', 'metrics', 'history', 'jobs', ...DOMAIN],
};
const FOLDERS = ['config', 'metrics', 'db', 'policy', 'flags', 'outbox', 'history', 'jobs', 'write', 'read', 'consistency', 'cutover', 'http', 'sql'];

/** Syntax refused everywhere. */
const RESTRICTED = [
  { selector: "ExportDefaultDeclaration", message: 'Use named exports.' },
  { selector: "TSEnumDeclaration", message: 'Use `as const` arrays instead of enums.' },
];

/**
 * Outside src/db/dialects/ no code compares engine names (issue 10): it asks its store's
 * adapter (`store.adapter`, src/db/dialects/dialect.ts) instead.
 */
const ENGINE_NAME = 'engine-name comparison outside src/db/dialects/: add a method or property to DialectAdapter (src/db/dialects/dialect.ts) and ask store.adapter (issue 10)';
const ENGINE = '/^(pg|mysql|sqlite)$/';
const ENGINE_COMPARISONS = [
  {
    // `x === 'mysql'`, `'pg' !== y`, `store.dialect === …`, `dialect !== …`: one report per comparison.
    selector: `BinaryExpression[operator=/^[!=]==?$/]:matches([left.value=${ENGINE}], [right.value=${ENGINE}], [left.property.name='dialect'], [right.property.name='dialect'], [left.name='dialect'], [right.name='dialect'])`,
    message: ENGINE_NAME,
  },
  { selector: `SwitchStatement:matches([discriminant.property.name='dialect'], [discriminant.name='dialect']), SwitchCase[test.value=${ENGINE}]`, message: ENGINE_NAME },
];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'data/', 'coverage/', '.unleash/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', ...RESTRICTED],
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { boundaries },
    settings: {
      'import/resolver': { [path.resolve('tools/eslint-resolver.cjs')]: {} },
      'boundaries/include': ['src/**/*.ts'],
      'boundaries/elements': [
        { type: 'shared', pattern: 'src/shared', partialMatch: false },
        { type: 'top', pattern: 'src/cli', partialMatch: false },
        { type: 'top', pattern: 'src/compose', partialMatch: false },
        ...FOLDERS.map((folder) => ({ type: folder, pattern: `src/${folder}`, partialMatch: false })),
        // The files at the root of src/: the composition root on top, the error and event vocabularies at the bottom.
        { type: 'top', pattern: 'src/app.ts', mode: 'full' },
        { type: 'shared', pattern: ['src/errors.ts', 'src/events.ts'], mode: 'full' },
      ],
    },
    rules: {
      'boundaries/no-unknown-files': 'error',
      'boundaries/dependencies': [
        'error',
        {
          default: 'disallow',
          message: 'this import points up or sideways across layers (DESIGN §10; the allowed directions are in eslint.config.js)',
          policies: Object.entries(LAYERS).map(([from, allow]) => ({
            from: { element: { type: from } },
            allow: { to: { element: { types: { anyOf: [from, ...allow] } } } },
          })),
        },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/db/dialects/**'],
    rules: { 'no-restricted-syntax': ['error', ...RESTRICTED, ...ENGINE_COMPARISONS] },
  },
  {
    // The lint's own import resolver is loaded with require() by eslint-module-utils.
    files: ['tools/**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', exports: 'writable', module: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Tool config files must default-export.
    files: ['eslint.config.js', 'vitest.config.ts', 'knip.config.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Focused tests must never reach main: CI fails on them.
      'no-restricted-properties': [
        'error',
        { object: 'describe', property: 'only', message: 'No focused tests.' },
        { object: 'it', property: 'only', message: 'No focused tests.' },
        { object: 'test', property: 'only', message: 'No focused tests.' },
      ],
    },
  },
);
