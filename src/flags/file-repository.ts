import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, statSync, unwatchFile, watchFile } from 'node:fs';
import type { FeatureInterface } from 'unleash-client/lib/feature.js';
import type { RepositoryInterface } from 'unleash-client/lib/repository/index.js';
import type { Segment } from 'unleash-client/lib/strategy/strategy.js';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const strategySchema = z
  .object({
    name: z.string().min(1),
    parameters: z.record(z.union([z.string(), z.number(), z.boolean()]).transform(String)).optional(),
    constraints: z.array(z.record(z.unknown())).optional(),
    segments: z.array(z.number()).optional(),
    variants: z.array(z.record(z.unknown())).optional(),
  })
  .passthrough();

const fileSchema = z
  .object({
    version: z.number().optional(),
    features: z.array(
      z
        .object({
          name: z.string().min(1),
          enabled: z.boolean(),
          strategies: z.array(strategySchema).default([{ name: 'default' }]),
        })
        .passthrough(),
    ),
    segments: z.array(z.object({ id: z.number(), constraints: z.array(z.record(z.unknown())) }).passthrough()).optional(),
  })
  .passthrough();

/**
 * An unleash-client repository backed by a local file in Unleash's client-features format
 * (YAML or JSON). The same engine evaluates it as it would a server's answer, so
 * strategies, percentages and stickiness behave alike. Reloaded when the file changes;
 * a broken edit is reported and the last good flags stay.
 */
export class FileFeatureRepository extends EventEmitter implements RepositoryInterface {
  private features = new Map<string, FeatureInterface>();
  private segments = new Map<number, Segment>();
  private lastMtime = -1;
  private watching = false;

  constructor(
    private readonly file: string,
    private readonly intervalMs: number,
  ) {
    super();
  }

  async start(): Promise<void> {
    this.load();
    this.emit('ready');
    if (!this.watching) {
      this.watching = true;
      watchFile(this.file, { interval: this.intervalMs, persistent: false }, () => this.load());
    }
  }

  stop(): void {
    if (this.watching) unwatchFile(this.file);
    this.watching = false;
  }

  /** Re-reads the file now (also called by the watcher). */
  load(): void {
    try {
      if (!existsSync(this.file)) {
        // Gone after a good load (deleted, or a deploy swapping it): an error, never "every
        // flag off" — that would switch dual-write off and mark every target stale by itself.
        if (this.lastMtime > 0) throw new Error('the file is missing');
        if (this.lastMtime !== 0) {
          this.lastMtime = 0;
          this.features = new Map();
          this.emit('warn', `flag file ${this.file} does not exist: every flag is off`);
          this.emit('changed', []);
        }
        return;
      }
      const mtime = statSync(this.file).mtimeMs;
      const parsed = fileSchema.safeParse(parseYaml(readFileSync(this.file, 'utf8')));
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new Error(`${issue?.path.join('.') || '(file)'}: ${issue?.message ?? 'invalid'}`);
      }
      this.lastMtime = mtime;
      this.features = new Map(parsed.data.features.map((f) => [f.name, f as unknown as FeatureInterface]));
      this.segments = new Map((parsed.data.segments ?? []).map((s) => [s.id, s as unknown as Segment]));
      this.emit('changed', [...this.features.values()]);
    } catch (error) {
      this.emit('error', new Error(`flag file ${this.file}: ${(error as Error).message}; keeping the last good flags`));
    }
  }

  getToggle(name: string): FeatureInterface | undefined {
    return this.features.get(name);
  }

  getToggles(): FeatureInterface[] {
    return [...this.features.values()];
  }

  getTogglesWithSegmentData(): never[] {
    return this.getToggles() as never[];
  }

  getSegment(id: number): Segment | undefined {
    return this.segments.get(id);
  }
}
