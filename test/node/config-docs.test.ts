import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NODE_DEFAULTS } from '../../src/node/config.js';
import { AP_DEFAULTS } from '../../src/policy/ap/ap-async.js';
import { CAUSAL_DEFAULTS } from '../../src/policy/causal/causal.js';

/**
 * STYLE.md: "a test keeps docs and defaults equal". For each options interface, every field that
 * has a value in its defaults object must say `@default <that value>` in its JSDoc.
 */
function documentedDefaults(file: string, iface: string): Map<string, string> {
  const source = readFileSync(fileURLToPath(new URL(`../../src/${file}`, import.meta.url)), 'utf8');
  const body = new RegExp(`export interface ${iface} \\{([\\s\\S]*?)\\n\\}`).exec(source)?.[1];
  if (body === undefined) throw new Error(`${file} has no interface ${iface}`);
  const out = new Map<string, string>();
  for (const m of body.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*?)\*\/\s*readonly (\w+)\??:/g)) {
    const tag = /@default\s+(.+?)\s*(?:\*\/|\n|$)/.exec(m[1] ?? '')?.[1];
    if (tag !== undefined) out.set(m[2]!, tag.trim());
  }
  return out;
}

const cases: [string, string, Record<string, unknown>][] = [
  ['node/config.ts', 'ReplicaNodeConfig', NODE_DEFAULTS],
  ['policy/ap/ap-async.ts', 'ApAsyncOptions', AP_DEFAULTS],
  ['policy/causal/causal.ts', 'CausalOptions', CAUSAL_DEFAULTS],
];

describe.each(cases)('%s: %s', (file, iface, defaults) => {
  const documented = documentedDefaults(file, iface);
  const shared = Object.keys(defaults).filter((k) => documented.has(k));

  it('documents a default for every option the defaults object sets', () => {
    const options = [...documented.keys()];
    // Internal defaults (not options) may exist; every documented option must be in the object.
    for (const name of options) {
      if (/^\d|^'/.test(documented.get(name)!)) expect(Object.keys(defaults), `${iface}.${name}`).toContain(name);
    }
    expect(shared.length).toBeGreaterThan(2);
  });

  it.each(shared)('%s: @default equals the value', (name) => {
    const tag = documented.get(name)!;
    const value = defaults[name];
    const parsed = tag.startsWith("'") ? tag.slice(1, -1) : Number(tag.replaceAll('_', ''));
    expect(parsed, `${iface}.${name}: @default ${tag} vs ${String(value)}`).toBe(value);
  });
});
