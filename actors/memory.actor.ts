import { fromPromise } from 'xstate';
import { checked } from '../src/errors.js';
import { RecallResult, type MemoryLayer, type RecallQuery } from '../src/memory/contract.js';

/** Recalls memory for a run; the chart turns a failure into a warning. */
export function recallActor(memory: MemoryLayer) {
  return fromPromise<RecallResult, RecallQuery>(async ({ input, signal }) =>
    checked(RecallResult, await memory.recall(input, { signal }), 'memory'),
  );
}
