import { fromCallback, fromPromise, type EventObject } from 'xstate';
import { RunchartError } from '../src/errors.js';

/**
 * A typed stand-in for a service the runtime provides; called unprovided, it fails with `not-provided`.
 * @example
 * setup({ actors: { callModel: placeholder<ModelResponse, ModelRequest>('callModel') } });
 */
export function placeholder<Output, Input>(name: string) {
  return fromPromise<Output, Input>(async () => {
    throw new RunchartError('not-provided', 'runtime', `runtime: the actor "${name}" is not provided; pass it in machine.provide({ actors: { ${name} } })`);
  });
}

/** The telemetry stand-in: records nothing, since telemetry must never stop a run. */
export function silentTelemetry<Event extends EventObject, Input>() {
  return fromCallback<Event, Input>(() => () => {});
}
