// Run under `ulimit -f 1` (files up to 1 KB): appends a line that fits, then lines that cross the limit.
// Prints what resolved, what the log's owner applied, and what a reader finds in the file afterwards.
import { openJsonLog } from '../../src/store/log.js';

const path = process.argv[2]!;
const outcomes: string[] = [];
const applied: string[] = [];
const log = await openJsonLog<{ runId: string; pad: string }>(path, () => {}, () => {});
for (const runId of ['r0', 'r1', 'r2']) {
  try {
    await log.append({ runId, pad: 'x'.repeat(700) }, () => applied.push(runId));
    outcomes.push(`${runId}:ok`);
  } catch (error) {
    outcomes.push(`${runId}:${(error as Error).message.includes('EFBIG') ? 'EFBIG' : (error as Error).message}`);
  }
}
log.close();
const read: string[] = [];
(await openJsonLog<{ runId: string }>(path, (entry) => read.push(entry.runId), () => {})).close();
process.stdout.write(`${JSON.stringify({ outcomes, applied, read })}\n`);
