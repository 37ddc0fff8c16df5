/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench -- --cpu-prof`):
 * self time grouped by package (or Tandem source folder), then the top functions.
 *
 *   node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args, positionals } = parseArgs({
  options: { top: { type: 'string', default: '25' } },
  allowPositionals: true,
});
if (positionals.length === 0) {
  process.stderr.write('usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top N]\n');
  process.exit(2);
}

for (const file of positionals) summarise(file, Number(args.top));

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

function summarise(file: string, top: number): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    total += dt;
  });
  const byGroup = new Map<string, number>();
  const byFunction = new Map<string, number>();
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

function groupOf(functionName: string, url: string): string {
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
    const parts = (dist[1] ?? '').split('/');
    return `tandem: ${parts.length > 1 ? parts.slice(0, -1).join('/') : parts[0]}`;
  }
  return `other: ${shortUrl(url)}`;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) return url.slice(nm + 'node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist !== -1) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}

function sorted(map: Map<string, number>): Array<[string, number]> {
  return [...map.entries()].sort((a, b) => b[1] - a[1]);
}

function pct(part: number, whole: number): string {
  return whole === 0 ? '0 %' : `${((100 * part) / whole).toFixed(1)} %`;
}
