import { describe, expect, it } from 'vitest';
import { soakServe } from '../../bench/serve-soak.js';

// A busy `runchart serve` on the default config (every run recorded) holds no more after four
// waves of runs than after the first. Each figure is taken after a full garbage collection in the
// server (through its inspector), so what is compared is what the server keeps, not garbage.
// Before the recorder converted and wrote events as they came, the figures after the four waves
// were RSS 125 → 192 MB and heap 41 → 103 MB (bench/README.md, "Serve soak").
const waves = 4;
const concurrency = 200;
/** RSS after the last wave may pass RSS after the first by this share. */
const rssMargin = 0.25;
/** The heap in use after the last wave may pass that after the first by this many MB. */
const heapMarginMb = 15;

describe('runchart serve under waves of concurrent runs', () => {
  it(`holds no more after ${waves} waves of ${concurrency} runs than after the first (RSS within ${rssMargin * 100}%, heap within ${heapMarginMb} MB)`, { timeout: 120_000 }, async () => {
    const result = await soakServe({ waves, concurrency, idleMs: 0 });
    expect(result.failed).toBe(0);
    expect(result.completed).toBe(waves * concurrency);
    expect(result.warnings).toEqual([]);
    const [firstRss, lastRss] = [result.afterWave[0]!, result.afterWave.at(-1)!];
    const [firstHeap, lastHeap] = [result.heapAfterWave[0]!, result.heapAfterWave.at(-1)!];
    expect(lastRss, `RSS after each wave (MB): ${result.afterWave.map((mb) => mb.toFixed(0)).join(', ')}`).toBeLessThanOrEqual(firstRss * (1 + rssMargin));
    expect(lastHeap, `heap after each wave (MB): ${result.heapAfterWave.map((mb) => mb.toFixed(0)).join(', ')}`).toBeLessThanOrEqual(firstHeap + heapMarginMb);
  });
});
