import type { BackfillProgress } from '../../consistency/backfill.js';
import type { FlagSource } from '../../flags/flag-source.js';
import { flagNames, KILL_SWITCH_FLAG } from '../../flags/resolve-stage.js';
import type { HistoryRing } from '../../history/history-ring.js';
import type { JobContext, JobRegistry } from '../../jobs/job-registry.js';
import { featurePercent } from '../../read/read-routing.js';

/**
 * Capabilities the console shows buttons for. `cutover` and `rollback` are true since the
 * fenced primary switch (DESIGN §5) exists; the console points to the CLI for them.
 */
export interface ConsoleCapabilities {
  cutover: boolean;
  rollback: boolean;
}

/** What the console's admin endpoints need from the composition root. */
export interface ConsoleApi {
  tables(): ReadonlySet<string>;
  history: HistoryRing;
  jobs: JobRegistry;
  flags: FlagSource;
  /** The local flag file (edited only when flags do not come from Unleash). */
  flagsFile: string;
  unleashUrl: string | undefined;
  capabilities: ConsoleCapabilities;
  verify(table: string, options: { repair: boolean; onProgress: JobContext['progress'] }): Promise<unknown>;
  backfill(
    table: string,
    options: { rate?: number; chunkSize?: number; restart: boolean; onProgress: (p: BackfillProgress) => void; shouldStop: () => boolean },
  ): Promise<unknown>;
}

export const SWITCH_FLAGS = ['dualWrite', 'targetPrimary', 'retireSource'] as const;
export const PERCENT_FLAGS = ['readTarget', 'shadowRead'] as const;

export interface FlagView {
  name: string;
  role: (typeof SWITCH_FLAGS)[number] | (typeof PERCENT_FLAGS)[number] | 'killSwitch';
  kind: 'switch' | 'percent';
  enabled: boolean;
  percent: number | null;
  /** The flag in Unleash's UI, when flags come from Unleash. */
  link: string | null;
}

/** Flags per table as the console shows them, with where to change them. */
export function describeFlags(api: ConsoleApi): {
  origin: 'unleash' | 'file';
  editable: boolean;
  file: string | null;
  unleashUi: string | null;
  synchronized: boolean;
  lastError: string | null;
  killSwitch: FlagView;
  tables: Array<{ table: string; flags: FlagView[] }>;
} {
  const { flags } = api;
  const features = flags.features();
  const ui = api.unleashUrl ? unleashUi(api.unleashUrl) : null;
  const view = (name: string, role: FlagView['role'], kind: FlagView['kind']): FlagView => {
    const feature = features.find((f) => f.name === name);
    return {
      name,
      role,
      kind,
      enabled: feature?.enabled ?? false,
      percent: kind === 'percent' ? featurePercent(feature) : null,
      link: ui ? `${ui}/projects/default/features/${encodeURIComponent(name)}` : null,
    };
  };
  return {
    origin: flags.origin,
    editable: flags.origin === 'file',
    file: flags.origin === 'file' ? api.flagsFile : null,
    unleashUi: ui,
    synchronized: flags.synchronized(),
    lastError: flags.lastError() ?? null,
    killSwitch: view(KILL_SWITCH_FLAG, 'killSwitch', 'switch'),
    tables: [...api.tables()].sort().map((table) => {
      const names = flagNames(table);
      return {
        table,
        flags: [
          view(names.dualWrite, 'dualWrite', 'switch'),
          view(names.readTarget, 'readTarget', 'percent'),
          view(names.shadowRead, 'shadowRead', 'percent'),
          view(names.targetPrimary, 'targetPrimary', 'switch'),
          view(names.retireSource, 'retireSource', 'switch'),
        ],
      };
    }),
  };
}

/** Unleash's client API URL (…/api) to its web UI's base. */
function unleashUi(apiUrl: string): string {
  return apiUrl.replace(/\/+$/, '').replace(/\/api$/, '');
}
