import { describe, expect, it } from 'vitest';
import type { FlagSource } from '../../src/flags/flag-source.js';
import { HistoryRing } from '../../src/history/history-ring.js';
import { describeFlags, type ConsoleApi } from '../../src/http/console/console-api.js';
import { JobRegistry } from '../../src/jobs/job-registry.js';

/** A flag source as Unleash would answer (the true external edge; no network here). */
function unleashFlags(): FlagSource {
  const features = [
    { name: 'tandem.users.dual-write', enabled: true, strategies: [{ name: 'default' }] },
    { name: 'tandem.users.read-target', enabled: true, strategies: [{ name: 'flexibleRollout', parameters: { rollout: '40' } }] },
  ];
  return {
    origin: 'unleash',
    start: async () => undefined,
    stop: () => undefined,
    isEnabled: (name) => features.some((f) => f.name === name && f.enabled),
    synchronized: () => true,
    lastError: () => undefined,
    onChange: () => undefined,
    features: () => features,
  };
}

describe('the console\'s view of the flags', () => {
  it('from Unleash: not editable, names with links to the Unleash UI, percentages read from the strategies', () => {
    const api: ConsoleApi = {
      tables: () => new Set(['users']),
      history: new HistoryRing(['users']),
      jobs: new JobRegistry(),
      flags: unleashFlags(),
      flagsFile: '/nowhere/flags.yaml',
      unleashUrl: 'https://unleash.example.com/api/',
      capabilities: { cutover: false, rollback: false },
      verify: async () => undefined,
      backfill: async () => undefined,
    };
    const view = describeFlags(api);
    expect(view).toMatchObject({ origin: 'unleash', editable: false, file: null, unleashUi: 'https://unleash.example.com' });
    const users = view.tables[0]?.flags ?? [];
    expect(users.find((f) => f.role === 'dualWrite')).toMatchObject({
      enabled: true,
      link: 'https://unleash.example.com/projects/default/features/tandem.users.dual-write',
    });
    expect(users.find((f) => f.role === 'readTarget')).toMatchObject({ kind: 'percent', percent: 40 });
    expect(users.find((f) => f.role === 'shadowRead')).toMatchObject({ enabled: false, percent: 0 });
    expect(view.killSwitch).toMatchObject({ name: 'tandem.kill-switch', enabled: false });
  });
});
