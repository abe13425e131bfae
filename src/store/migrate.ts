import { runMachine } from '../../machines/run/machine.js';
import type { RunContext } from '../../machines/run/types.js';
import { RunchartError } from '../errors.js';
import { SCHEMA_VERSION, type PersistedRun } from './contract.js';

type Json = Record<string, unknown>;

/**
 * v1 → v2. v1 kept identity and recall as flat context keys and invoked one actor per step; v2
 * keeps them as `accepted` and `recalled` (fewer keys make every context update cheaper), puts a
 * cancel reason in `error`, and has one `callLayers` actor that a restored run asks again
 * (`run.resume`), so v1's step actors are dropped.
 */
function fromV1(snapshot: Json): Json {
  const context = snapshot.context as Json;
  const { traceId, parentSpanId, tenantId, principalId, sessionId, input, capabilities, recalled, history, cancelReason, error: formerError, ...rest } = context;
  const accepted: Json = { traceId, tenantId, principalId, input, capabilities };
  if (parentSpanId) accepted.parentSpanId = parentSpanId;
  if (sessionId) accepted.sessionId = sessionId;
  const error = formerError ?? (cancelReason ? { kind: 'cancelled', layer: 'runtime', message: `runtime: ${String(cancelReason)}`, retryable: false } : null);
  const children = (snapshot.children ?? {}) as Json;
  const telemetry = children.telemetry;
  const done = snapshot.status !== 'active';
  const callLayers = { snapshot: { status: 'active', input: { runId: context.runId } }, src: 'callLayers', syncSnapshot: false };
  // Rest and spread copy stored keys as data (`Object.assign` would run a stored `__proto__` key as a setter).
  const { context: _context, children: _children, ...others } = snapshot;
  return {
    context: { accepted, recalled: { items: recalled ?? [], history: history ?? [] }, error, ...rest },
    children: done ? {} : telemetry ? { telemetry, callLayers } : { callLayers },
    ...others,
  };
}

/**
 * v2 → v3. v2 had one `callLayers` actor for the life of the run, to which each state sent its
 * request; v3 has each state invoke its layer call. A v2 run's pending call is recreated as the
 * invoke its state makes now (its input computed by the chart from the stored context), so
 * XState starts it again on restore, as it restarts any pending call; the telemetry actor keeps
 * the run's identity in its own snapshot.
 */
function fromV2(snapshot: Json): Json {
  const { children: _children, ...others } = snapshot;
  if (snapshot.status !== 'active') return { children: {}, ...others };
  // v3 keeps the model step's deadline in context; a v2 step had none.
  const context = { modelDeadline: null, ...(snapshot.context as Json) } as unknown as RunContext;
  const resolved = runMachine.resolveState({ value: snapshot.value as never, context });
  const children: Json = {};
  const accepted = context.accepted;
  const identity = accepted.tenantId
    ? {
        runId: context.runId,
        traceId: accepted.traceId,
        ...(accepted.parentSpanId ? { parentSpanId: accepted.parentSpanId } : {}),
        tenantId: accepted.tenantId,
        principalId: accepted.principalId,
        ...(accepted.sessionId ? { sessionId: accepted.sessionId } : {}),
      }
    : null;
  const deepest = resolved._nodes.filter((node) => node.type === 'atomic').map((node) => node.path.join('.'))[0] ?? 'ingress';
  for (const node of resolved._nodes) {
    for (const definition of node.invoke) {
      const input = node === runMachine.root ? { runId: context.runId } : typeof definition.input === 'function' ? definition.input({ context, event: { type: 'xstate.init' }, self: undefined } as never) : definition.input;
      const persisted: Json = node === runMachine.root ? { status: 'active', input, identity, state: deepest } : { status: 'active', input };
      children[definition.id] = { snapshot: persisted, src: definition.src, syncSnapshot: false };
    }
  }
  return { children: JSON.parse(JSON.stringify(children)) as Json, ...others, context: context as unknown as Json };
}

const migrations: Record<number, (snapshot: Json) => Json> = { 1: fromV1, 2: fromV2 };

/**
 * A stored run in the format this build runs: runs of an earlier schemaVersion are migrated step
 * by step; a run of an unknown version is refused with a message naming both.
 */
export function readableRun(run: PersistedRun): PersistedRun {
  if (run.schemaVersion === SCHEMA_VERSION) return run;
  if (!Number.isInteger(run.schemaVersion) || run.schemaVersion < 1 || run.schemaVersion > SCHEMA_VERSION) {
    throw new RunchartError(
      'contract-violation',
      'store',
      `store: run ${run.runId} was saved with schemaVersion ${run.schemaVersion}, but this build reads schemaVersion 1 to ${SCHEMA_VERSION}`,
    );
  }
  let snapshot = run.snapshot as Json;
  for (let version = run.schemaVersion; version < SCHEMA_VERSION; version++) snapshot = migrations[version]!(snapshot);
  const { schemaVersion: _version, snapshot: _snapshot, ...identity } = run;
  return { schemaVersion: SCHEMA_VERSION, ...identity, snapshot };
}
