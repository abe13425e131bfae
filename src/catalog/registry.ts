import { RunchartError } from '../errors.js';
import type { Capability, CatalogLayer, PinnedCapability } from './contract.js';

/**
 * The in-process catalog: capabilities by `name@version` in a Map.
 * @example
 * const catalog = createCatalog([add, multiply]);
 */
export function createCatalog(capabilities: readonly Capability[]): CatalogLayer {
  const byKey = new Map<string, Capability>();
  for (const capability of capabilities) {
    const key = `${capability.name}@${capability.version}`;
    if (byKey.has(key)) throw new RunchartError('invalid-input', 'catalog', `catalog: "${key}" is defined twice`);
    byKey.set(key, capability);
  }
  const list = Object.freeze([...byKey.values()]);
  return { list: () => list, get: (name, version) => byKey.get(`${name}@${version}`) };
}

/** OpenAI tool names allow letters, digits, `_` and `-`, at most 64 characters. */
export function toolNameFor(name: string): string {
  return name.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64);
}

/** Compares two semantic versions by semver precedence (build metadata ignored, pre-releases below the release). */
export function compareVersions(left: string, right: string): number {
  const parse = (version: string) => {
    const withoutBuild = version.split('+', 1)[0]!;
    const dash = withoutBuild.indexOf('-');
    const core = dash === -1 ? withoutBuild : withoutBuild.slice(0, dash);
    return { parts: core.split('.').map(Number), pre: dash === -1 ? undefined : withoutBuild.slice(dash + 1).split('.') };
  };
  const a = parse(left);
  const b = parse(right);
  for (let index = 0; index < 3; index++) {
    const difference = (a.parts[index] ?? 0) - (b.parts[index] ?? 0);
    if (difference !== 0) return difference;
  }
  if (!a.pre || !b.pre) return a.pre ? -1 : b.pre ? 1 : 0;
  for (let index = 0; index < Math.max(a.pre.length, b.pre.length); index++) {
    const x = a.pre[index];
    const y = b.pre[index];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const numeric = /^\d+$/.test(x) && /^\d+$/.test(y);
    if (numeric && Number(x) !== Number(y)) return Number(x) - Number(y);
    if (!numeric && x !== y) return /^\d+$/.test(x) ? -1 : /^\d+$/.test(y) ? 1 : x < y ? -1 : 1;
  }
  return 0;
}

/**
 * Pins the newest version of each visible capability and gives each a model-facing name that
 * is unique in the run and maps back exactly.
 */
export function pinCapabilities(visible: readonly Capability[]): PinnedCapability[] {
  const newest = new Map<string, Capability>();
  for (const capability of visible) {
    const current = newest.get(capability.name);
    if (!current || compareVersions(capability.version, current.version) > 0) newest.set(capability.name, capability);
  }
  const taken = new Set<string>();
  const pinned: PinnedCapability[] = [];
  for (const capability of [...newest.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const base = toolNameFor(capability.name);
    let toolName = base;
    for (let suffix = 2; taken.has(toolName); suffix++) toolName = `${base.slice(0, 60)}_${suffix}`;
    taken.add(toolName);
    pinned.push({
      name: capability.name,
      version: capability.version,
      toolName,
      description: capability.description,
      effects: capability.effects,
      parameters: capability.parameters,
    });
  }
  return pinned;
}
