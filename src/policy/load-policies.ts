import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { TandemError } from '../errors.js';
import { policyFileSchema, type PolicyFile } from './policy.js';

export interface LoadedPolicyFile {
  file: PolicyFile;
  path: string;
}

/** Reads every `*.yaml`/`*.yml`/`*.json` in the folder; one error lists every problem. */
export function loadPolicyFiles(dir: string): LoadedPolicyFile[] {
  const problems: string[] = [];
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    names = readdirSync(dir).filter((n) => /\.(ya?ml|json)$/i.test(n)).sort();
  } catch (error) {
    throw new TandemError('policy_invalid', 500, `Policies folder ${dir}: ${(error as Error).message}`);
  }
  const out: LoadedPolicyFile[] = [];
  const seen = new Map<string, string>();
  for (const name of names) {
    const file = path.join(dir, name);
    let raw: unknown;
    try {
      raw = parseYaml(readFileSync(file, 'utf8'));
    } catch (error) {
      problems.push(`${file}: ${(error as Error).message}`);
      continue;
    }
    const parsed = policyFileSchema.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        const where = issue.path.join('.') || '(file)';
        const detail = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
        problems.push(`${file}: ${where}: ${detail}`);
      }
      continue;
    }
    const previous = seen.get(parsed.data.table);
    if (previous) {
      problems.push(`${file}: table ${parsed.data.table} already has a policy in ${previous}`);
      continue;
    }
    seen.set(parsed.data.table, file);
    out.push({ file: parsed.data, path: file });
  }
  if (problems.length > 0) {
    throw new TandemError('policy_invalid', 500, `Invalid policies:\n  - ${problems.join('\n  - ')}`);
  }
  return out;
}
