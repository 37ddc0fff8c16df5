import { InMemStorageProvider, Unleash, type Context } from 'unleash-client';
import { coerceError } from '../errors.js';
import type { EventSink } from '../events.js';
import { FileFeatureRepository } from './file-repository.js';

export interface FlagSourceOptions {
  file: string;
  unleashUrl?: string | undefined;
  unleashToken?: string | undefined;
  refreshIntervalMs: number;
  appName: string;
  environment: string;
  /** Longest wait for the first flags at start before carrying on with every flag off, ms. */
  startTimeoutMs?: number;
}

export interface FeatureView {
  name: string;
  enabled: boolean;
  strategies: Array<{ name: string; parameters?: Record<string, string> }>;
}

/** Flags as Tandem sees them: one unleash-client engine over a server or a local file. */
export interface FlagSource {
  readonly origin: 'unleash' | 'file';
  start(): Promise<void>;
  stop(): void;
  isEnabled(name: string, context?: Context): boolean;
  /** True once a flag set has been loaded. Before that every flag reads as off. */
  synchronized(): boolean;
  lastError(): string | undefined;
  onChange(listener: () => void): void;
  features(): FeatureView[];
}

export function makeFlagSource(options: FlagSourceOptions, events: EventSink): FlagSource {
  const origin = options.unleashUrl ? 'unleash' : 'file';
  const repository = options.unleashUrl ? undefined : new FileFeatureRepository(options.file, options.refreshIntervalMs);
  const unleash = new Unleash({
    appName: options.appName,
    environment: options.environment,
    url: options.unleashUrl ?? 'http://127.0.0.1:1/unused-local-flag-file',
    refreshInterval: options.refreshIntervalMs,
    ...(options.unleashToken ? { customHeaders: { Authorization: options.unleashToken } } : {}),
    ...(repository ? { repository } : {}),
    disableMetrics: origin === 'file',
    storageProvider: new InMemStorageProvider(),
    disableAutoStart: true,
    skipInstanceCountWarning: true,
  });
  let synced = false;
  let lastError: string | undefined;
  const listeners: Array<() => void> = [];
  unleash.on('error', (error: unknown) => {
    const err = coerceError(error);
    lastError = err.message;
    events.emit({ type: 'flags.error', origin, error: err });
  });
  unleash.on('warn', () => undefined);
  unleash.on('changed', (data: unknown) => {
    synced = true;
    lastError = undefined;
    events.emit({ type: 'flags.loaded', origin, features: Array.isArray(data) ? data.length : unleash.getFeatureToggleDefinitions().length });
    for (const listener of listeners) listener();
  });
  unleash.on('unchanged', () => {
    synced = true;
    lastError = undefined;
  });

  return {
    origin,
    async start() {
      const first = new Promise<void>((resolve) => {
        if (synced) return resolve();
        const timer = setTimeout(resolve, options.startTimeoutMs ?? 5_000);
        timer.unref();
        unleash.once('changed', () => {
          clearTimeout(timer);
          resolve();
        });
        unleash.once('unchanged', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      await unleash.start().catch((error: unknown) => {
        lastError = coerceError(error).message;
      });
      await first;
    },
    stop() {
      unleash.destroy();
    },
    isEnabled(name, context) {
      // Before the first flag set, every flag is off (source-only, reads from the source).
      if (!synced) return false;
      return unleash.isEnabled(name, context ?? {}, false);
    },
    synchronized: () => synced,
    lastError: () => lastError,
    onChange(listener) {
      listeners.push(listener);
    },
    features() {
      return unleash.getFeatureToggleDefinitions().map((f) => ({
        name: f.name,
        enabled: f.enabled,
        strategies: (f.strategies ?? []).map((s) => ({ name: s.name, parameters: s.parameters as Record<string, string> })),
      }));
    },
  };
}
