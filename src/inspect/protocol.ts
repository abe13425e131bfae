import type { AnyActorRef, InspectionEvent } from 'xstate';

/** The version of the Stately inspection protocol the lines follow (that of `@statelyai/inspect` 0.7). */
export const PROTOCOL_VERSION = '0.7.2';

/** One inspection event in the Stately protocol, before the recorder adds its run id and timestamp. */
export type ProtocolEvent =
  | { type: '@xstate.actor'; name: string; sessionId: string; parentId?: string; rootId: string; id: null; definition?: string; snapshot: unknown; _version: string }
  | { type: '@xstate.event'; sessionId: string; sourceId?: string; event: unknown; rootId: string; id: null; _version: string }
  | { type: '@xstate.snapshot'; sessionId: string; event: unknown; snapshot: unknown; rootId: string; id: null; _version: string };

type Logic = { config?: unknown; root?: unknown };
type Actor = AnyActorRef & { logic?: Logic; options?: { input?: unknown; snapshot?: unknown }; _parent?: AnyActorRef };

/** A machine's config as JSON, without its functions. */
function definitionOf(config: unknown): string {
  return JSON.stringify(config, (_key, value: unknown) => (typeof value === 'function' || typeof value === 'symbol' ? undefined : value));
}

/**
 * Converts XState inspection events to the Stately inspection protocol at once, as they are
 * emitted: nothing is deferred, so no actor (and no run) is held after its event. A state
 * machine's definition is turned into JSON once per machine, and given only when `wantsDefinition`
 * says so (a recording needs it once); other logic is named by its id alone.
 */
export interface ProtocolConverter {
  /**
   * The protocol event of an XState inspection event, or undefined for the kinds the protocol has no
   * place for. Values are left as XState gave them (the caller serializes them).
   */
  convert(event: InspectionEvent, wantsDefinition: (logic: object) => boolean): ProtocolEvent | undefined;
}

/**
 * A converter with its own cache of machine definitions (one JSON string per machine logic).
 * @example
 * const converter = createProtocolConverter();
 * const line = converter.convert(event, () => true);
 */
export function createProtocolConverter(): ProtocolConverter {
  const definitions = new WeakMap<object, string>();
  const definitionFor = (logic: Logic | undefined, name: string, wanted: (logic: object) => boolean): string | undefined => {
    // Only a state machine (it has a root state node) has a definition worth drawing.
    if (!logic || logic.root === undefined || typeof logic.config !== 'object' || logic.config === null) return JSON.stringify({ id: name });
    if (!wanted(logic)) return undefined;
    let definition = definitions.get(logic);
    if (definition === undefined) definitions.set(logic, (definition = definitionOf(logic.config)));
    return definition;
  };
  return {
    convert(event, wantsDefinition) {
      const actor = event.actorRef as Actor;
      switch (event.type) {
        case '@xstate.actor': {
          const config = actor.logic?.config as { id?: string } | undefined;
          const name = actor.id === actor.sessionId && typeof config === 'object' && config?.id ? config.id : actor.id;
          const definition = definitionFor(actor.logic, name, wantsDefinition);
          // The actor has no snapshot yet when XState announces it: its input (or the snapshot it is restored from) stands in.
          const snapshot = actor.options?.snapshot ?? { status: 'active', ...(actor.options?.input === undefined ? {} : { input: actor.options.input }) };
          return {
            type: '@xstate.actor',
            name,
            sessionId: actor.sessionId,
            ...(actor._parent ? { parentId: actor._parent.sessionId } : {}),
            rootId: event.rootId,
            id: null,
            ...(definition === undefined ? {} : { definition }),
            snapshot,
            _version: PROTOCOL_VERSION,
          };
        }
        case '@xstate.event':
          return {
            type: '@xstate.event',
            sessionId: actor.sessionId,
            ...(event.sourceRef ? { sourceId: event.sourceRef.sessionId } : {}),
            event: event.event,
            rootId: event.rootId,
            id: null,
            _version: PROTOCOL_VERSION,
          };
        case '@xstate.snapshot':
          return { type: '@xstate.snapshot', sessionId: actor.sessionId, event: event.event, snapshot: event.snapshot, rootId: event.rootId, id: null, _version: PROTOCOL_VERSION };
        default:
          return undefined;
      }
    },
  };
}
