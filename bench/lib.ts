/**
 * What the benchmark measures processes and the machine with (Linux /proc), and its
 * statistics. Processes, databases and the fault proxy come from the test helpers.
 */
import { readFileSync, readdirSync } from 'node:fs';

/** Resident set size of a process in bytes (VmRSS), or undefined when it is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A process and its descendants (a Tandem cluster primary and its workers), from /proc. */
export function processTree(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(kids.get(out[i] as number) ?? []));
  return out;
}

/** RSS summed over a process and its descendants, in bytes. */
export function treeRssBytes(pid: number): number | undefined {
  let total = 0;
  for (const p of processTree(pid)) total += rssBytes(p) ?? 0;
  return total || undefined;
}

/** User + system CPU time of a process, in seconds (from /proc/<pid>/stat), or undefined. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/** CPU seconds summed over a process and its live descendants. */
export function treeCpuSeconds(pid: number): number | undefined {
  let total = 0;
  for (const p of processTree(pid)) total += cpuSeconds(p) ?? 0;
  return total || undefined;
}

/** Percentile (0..100) of an ascending sorted array, nearest-rank. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? NaN;
}

/** Median of the finite numbers (NaN when there are none). */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

export interface CpuSnapshot {
  at: number;
  busy: number;
  procs: Map<number, { comm: string; ticks: number }>;
}

/**
 * CPU ticks of the whole machine and of every process, from /proc (Linux). Two snapshots
 * tell how much CPU went to processes other than the ones under test (a noisy neighbour).
 */
export function cpuSnapshot(): CpuSnapshot | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    const procs = new Map<number, { comm: string; ticks: number }>();
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        procs.set(Number(name), { comm, ticks: Number(fields[11]) + Number(fields[12]) });
      } catch {
        // gone meanwhile
      }
    }
    return { at: Date.now(), busy, procs };
  } catch {
    return undefined;
  }
}

/**
 * CPU (% of one core) used between two snapshots by everything except `ours` (pids) and the
 * database servers (postgres, mariadbd/mysqld). Processes that lived only between the two
 * snapshots count as others. `alsoOursSeconds`: CPU of ours that exited before `b`.
 */
export function otherCpuPercent(a: CpuSnapshot | undefined, b: CpuSnapshot | undefined, ours: readonly number[], alsoOursSeconds = 0): number {
  if (!a || !b || b.at <= a.at) return NaN;
  let accounted = 0;
  for (const [pid, p] of b.procs) {
    if (!(ours.includes(pid) || /^(postgres|mariadbd|mysqld)/.test(p.comm))) continue;
    const before = a.procs.get(pid);
    accounted += p.ticks - (before && before.comm === p.comm ? before.ticks : 0);
  }
  const seconds = (b.at - a.at) / 1000;
  // Clock-tick rounding can make an idle neighbour look slightly negative.
  return Math.max(0, (((b.busy - a.busy - accounted) / 100 - alsoOursSeconds) / seconds) * 100);
}

/** A URL for printing: no password. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, '//$1:***@');
}

/** The Node arguments that run a TypeScript entry point of the benchmark (tsx's loader). */
export function tsEntry(file: string): string[] {
  return ['--import', 'tsx', file];
}
