import { checked } from '../src/errors.js';
import { RecallResult, type MemoryLayer, type RecallQuery } from '../src/memory/contract.js';
import type { LayerService } from './layers.actor.js';

/** Recalls memory for a run; the chart turns a failure into a warning. */
export function recallService(memory: MemoryLayer): LayerService<RecallQuery, RecallResult> {
  return async (input, { signal }) => checked(RecallResult, await memory.recall(input, { signal }), 'memory');
}
