/**
 * The rolling share of shadow comparisons that matched, per table: the last `maxSamples`
 * results no older than `windowMs`.
 */
export class ConsistencyWindow {
  private readonly samples = new Map<string, Array<{ at: number; match: boolean }>>();

  constructor(
    private readonly maxSamples: number,
    private readonly windowMs: number,
  ) {}

  record(table: string, match: boolean, now = Date.now()): void {
    let list = this.samples.get(table);
    if (!list) {
      list = [];
      this.samples.set(table, list);
    }
    list.push({ at: now, match });
    if (list.length > this.maxSamples) list.splice(0, list.length - this.maxSamples);
  }

  /** Ratio (1 with no samples) and how many samples it rests on. */
  ratio(table: string, now = Date.now()): { ratio: number; samples: number } {
    const list = this.samples.get(table) ?? [];
    const cutoff = now - this.windowMs;
    let start = 0;
    while (start < list.length && (list[start]?.at ?? 0) < cutoff) start++;
    if (start > 0) list.splice(0, start);
    if (list.length === 0) return { ratio: 1, samples: 0 };
    const matches = list.reduce((n, s) => n + (s.match ? 1 : 0), 0);
    return { ratio: matches / list.length, samples: list.length };
  }
}
