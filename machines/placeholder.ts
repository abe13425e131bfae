import { fromCallback, type EventObject } from 'xstate';
import { RunchartError, toRunchartErrorData } from '../src/errors.js';
import { answers } from './run/requests.js';
import type { LayerRequest } from './run/types.js';

/**
 * The layers stand-in of an unprovided chart: every request is answered with its failure event,
 * a `not-provided` error, so the run fails with a message saying what to provide.
 * @example
 * setup({ actors: { callLayers: unprovidedLayers<LayerRequest, { runId: string }>() } });
 */
export function unprovidedLayers<Request extends LayerRequest, Input>() {
  return fromCallback<Request, Input>(({ receive, sendBack }) => {
    receive((request) => {
      const answer = answers[request.type];
      const error = new RunchartError(
        'not-provided',
        'runtime',
        `runtime: no service answers "${request.type}"; provide callLayers with machine.provide({ actors: { callLayers: layersActor({ ${answer.service}, … }) } })`,
      );
      sendBack({ type: answer.failed, error: toRunchartErrorData(error, answer.layer) });
    });
  });
}

/** The telemetry stand-in: records nothing, since telemetry must never stop a run. */
export function silentTelemetry<Event extends EventObject, Input>() {
  return fromCallback<Event, Input>(() => () => {});
}
