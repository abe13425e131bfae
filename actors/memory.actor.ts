import { checked } from '../src/errors.js';
import { RecallResult, type MemoryLayer, type RecallQuery } from '../src/memory/contract.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

/**
 * Recalls memory for a run (`recallMemory`); the chart turns a failure into a warning.
 * @example
 * runMachine.provide({ actors: { recallMemory: memoryActor(createInMemoryMemory()) } });
 */
export function memoryActor(memory: MemoryLayer, options: LayerCallOptions = {}) {
  return fromLayerCall<RecallResult, RecallQuery>(async ({ input, options: call }) => checked(RecallResult, await memory.recall(input, call), 'memory'), options);
}
