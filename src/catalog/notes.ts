import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { defineCapability } from './capability.js';

/**
 * A demo capability with an effect: it appends a note to a JSONL file, once per idempotency key
 * (a replay after a crash does not write twice). The starter config requires approval for it.
 * @example
 * const notes = notesCapability('.runchart/notes.jsonl');
 */
export function notesCapability(path: string) {
  return defineCapability({
    name: 'notes.save',
    version: '1.0.0',
    description: 'Save a short note for later',
    input: z.object({ text: z.string().min(1).max(2_000).describe('the note') }),
    output: z.object({ saved: z.boolean() }),
    effects: 'write',
    handler: async ({ text }, { idempotencyKey, tenantId, principalId }) => {
      await mkdir(dirname(path), { recursive: true });
      const existing = await readFile(path, 'utf8').catch(() => '');
      if (existing.split('\n').some((line) => line.includes(`"key":${JSON.stringify(idempotencyKey)}`))) return { saved: true };
      await appendFile(path, `${JSON.stringify({ key: idempotencyKey, tenantId, principalId, text, at: new Date().toISOString() })}\n`);
      return { saved: true };
    },
  });
}
