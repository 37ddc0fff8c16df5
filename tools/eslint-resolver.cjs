// A minimal eslint-import resolver (interface v2) for this repository's ESM TypeScript:
// relative imports name the compiled `.js` file; the source is the `.ts` beside it.
// eslint-plugin-boundaries uses it to know which file an import points at.
const fs = require('node:fs');
const path = require('node:path');

exports.interfaceVersion = 2;

exports.resolve = (source, file) => {
  if (!source.startsWith('.')) {
    // A package (or node:) import: external to the layers.
    try {
      return { found: true, path: require.resolve(source, { paths: [path.dirname(file)] }) };
    } catch {
      return { found: true, path: null };
    }
  }
  const base = path.resolve(path.dirname(file), source);
  for (const candidate of [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return { found: true, path: candidate };
  }
  return { found: false };
};
