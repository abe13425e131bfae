// Which layer of runchart a profiled function belongs to; shared by the CPU and allocation summaries.

/** Project paths to layer names, the first match wins. */
const layers: [RegExp, string][] = [
  [/\/src\/policy\//, 'policy'],
  [/\/src\/memory\//, 'memory'],
  [/\/(src\/execution\/|actors\/execution\.actor)/, 'execution (gateway, journal)'],
  [/\/src\/catalog\//, 'catalog'],
  [/\/(src\/models\/|actors\/model\.actor)/, 'model adapter'],
  [/\/(src\/telemetry\/|actors\/telemetry\.actor)/, 'telemetry'],
  [/\/src\/store\/directory/, 'store directory (lock, opening logs)'],
  [/\/src\/store\//, 'run store, journal and queue files'],
  [/\/src\/redaction/, 'redaction'],
  [/\/src\/errors/, 'errors and answer checks (src/errors.ts)'],
  [/\/src\/background\//, 'background queue'],
  [/\/(src\/ingress\/|actors\/ingress\.actor)/, 'ingress (parsing, pinning)'],
  [/\/machines\//, 'chart: guards, actions, requests (machines/)'],
  [/\/(actors\/layers\.actor|actors\/[a-z-]+\.actor)/, 'layer dispatch (callLayers)'],
  // The lazy store wrappers: what the store does after them is often inlined into them (an optimized frame stands for its callees).
  [/\/src\/layers/, 'store wrappers (src/layers.ts), with what they inline'],
  [/\/src\/runtime/, 'runtime bookkeeping (src/runtime.ts)'],
  [/\/src\//, 'other project code (src/)'],
  [/\/bench\//, 'bench harness (fake model, tool, checks)'],
];

/** The layer of a script URL in the project; undefined for libraries, Node and V8. */
export function layerOf(url: string): string | undefined {
  if (url.includes('node_modules')) return undefined;
  return layers.find(([pattern]) => pattern.test(url))?.[1];
}

/** The name used for XState's own code. */
export const xstateLayer = 'XState interpreter';

export const isXState = (url: string) => /node_modules\/xstate\//.test(url);
