#!/usr/bin/env node
/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. `bench/run.mjs --cpu-prof`):
 * self time grouped by package (or Tandem source folder), then the top functions.
 *
 *   node bench/profile-summary.mjs FILE.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { parseArgs } from 'node:util';

const { values: args, positionals } = parseArgs({
  options: { top: { type: 'string', default: '25' } },
  allowPositionals: true,
});
if (positionals.length === 0) {
  process.stderr.write('usage: node bench/profile-summary.mjs FILE.cpuprofile [--top N]\n');
  process.exit(2);
}

for (const file of positionals) summarise(file, Number(args.top));

/** @param {string} file @param {number} top */
function summarise(file, top) {
  /** @type {{nodes: Array<{id: number, callFrame: {functionName: string, url: string, lineNumber: number}}>, samples: number[], timeDeltas: number[]}} */
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<number, number>} */
  const selfUs = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    total += dt;
  });
  /** @type {Map<string, number>} */
  const byGroup = new Map();
  /** @type {Map<string, number>} */
  const byFunction = new Map();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const group = groupOf(functionName, url);
    byGroup.set(group, (byGroup.get(group) ?? 0) + us);
    const name = `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
  }
  const idle = byGroup.get('(idle)') ?? 0;
  const busy = total - idle;
  const lines = [`## ${file}`, '', `sampled ${(total / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s (${pct(busy, total)} of wall clock)`, ''];
  lines.push('| where (self time) | % of busy |', '|---|---:|');
  for (const [group, us] of sorted(byGroup)) if (group !== '(idle)') lines.push(`| ${group} | ${pct(us, busy)} |`);
  lines.push('', `| top ${top} functions (self time) | % of busy |`, '|---|---:|');
  for (const [name, us] of sorted(byFunction).filter(([n]) => !n.startsWith('(idle)')).slice(0, top)) lines.push(`| \`${name}\` | ${pct(us, busy)} |`);
  process.stdout.write(`${lines.join('\n')}\n\n`);
}

/** @param {string} functionName @param {string} url */
function groupOf(functionName, url) {
  if (functionName === '(idle)') return '(idle)';
  if (functionName === '(garbage collector)') return 'garbage collector';
  if (functionName === '(program)') return 'V8/native (program)';
  if (!url) return `native: ${functionName || '(anonymous)'}`;
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return `npm: ${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  const dist = url.match(/\/dist\/(.+)$/);
  if (dist) {
    const parts = dist[1].split('/');
    return `tandem: ${parts.length > 1 ? parts.slice(0, -1).join('/') : parts[0]}`;
  }
  return `other: ${shortUrl(url)}`;
}

/** @param {string} url */
function shortUrl(url) {
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) return url.slice(nm + 'node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist !== -1) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}

/** @param {Map<string, number>} map */
function sorted(map) {
  return [...map.entries()].sort((a, b) => b[1] - a[1]);
}

/** @param {number} part @param {number} whole */
function pct(part, whole) {
  return whole === 0 ? '0 %' : `${((100 * part) / whole).toFixed(1)} %`;
}
