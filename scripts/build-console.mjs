// Bundles the console's front end (console/*.ts with Preact, htm and uPlot from node_modules)
// into dist/console/: one ES module and one style sheet, served by Tandem at /console.
import { build } from 'esbuild';
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const outdir = path.join(root, 'dist', 'console');
mkdirSync(outdir, { recursive: true });

await build({
  entryPoints: [
    { in: path.join(root, 'console', 'main.ts'), out: 'console' },
    { in: path.join(root, 'console', 'console.css'), out: 'console' },
  ],
  outdir,
  bundle: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: false,
  legalComments: 'external',
  logLevel: 'warning',
  absWorkingDir: root,
});

const files = ['console.js', 'console.css'];
const sizes = files.map((f) => `${f} ${(statSync(path.join(outdir, f)).size / 1024).toFixed(1)} KiB`);
if (!process.argv.includes('--quiet')) console.log(`console bundled: ${sizes.join(', ')}`);
