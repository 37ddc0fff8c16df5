import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { TandemError } from '../errors.js';

/**
 * Sets one feature in the local flag file (YAML or JSON, Unleash's client-features format):
 * `on`, `off` or a percentage (a `flexibleRollout` strategy). The file is written to a
 * temporary name beside it and renamed over it, so the watcher never reads half a file.
 */
export function setFlagInFile(file: string, name: string, setting: string): { name: string; enabled: boolean; percent: number | null } {
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(name)) throw new TandemError('invalid_value', 400, `name: "${name.slice(0, 64)}" is not a flag name`, { field: 'name' });
  let strategy: Record<string, unknown>;
  let enabled = true;
  let percent: number | null = null;
  if (setting === 'on') strategy = { name: 'default' };
  else if (setting === 'off') {
    enabled = false;
    strategy = { name: 'default' };
  } else if (/^\d{1,3}%?$/.test(setting) && Number(setting.replace('%', '')) <= 100) {
    percent = Number(setting.replace('%', ''));
    strategy = { name: 'flexibleRollout', parameters: { rollout: String(percent), stickiness: 'default', groupId: name } };
  } else throw new TandemError('invalid_value', 400, `setting: "${setting.slice(0, 32)}" is not on, off or a percentage 0-100`, { field: 'setting' });
  const isJson = file.endsWith('.json');
  const doc = (existsSync(file) ? (parseYaml(readFileSync(file, 'utf8')) as { version?: number; features?: Array<Record<string, unknown>> } | null) : null) ?? {};
  const features = Array.isArray(doc.features) ? doc.features : [];
  const existing = features.find((f) => f['name'] === name);
  const feature = { name, enabled, strategies: [strategy] };
  if (existing) Object.assign(existing, feature);
  else features.push(feature);
  const out = { ...doc, version: doc.version ?? 2, features };
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  writeFileSync(temporary, isJson ? `${JSON.stringify(out, null, 2)}\n` : stringifyYaml(out));
  renameSync(temporary, file);
  return { name, enabled, percent };
}
