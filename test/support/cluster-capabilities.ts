// The capabilities of the cluster test's worker processes (loaded through execution.capability_modules):
// an effect that is a row under a unique key, counting every attempt; a payment that needs
// approval; and a wait that lasts until the run is cancelled.
import pg from 'pg';
import { z } from 'zod';
import { defineCapability } from '../../src/catalog/capability.js';

const schema = process.env.CLUSTER_SCHEMA!;
const pool = new pg.Pool({ connectionString: process.env.CLUSTER_DATABASE_URL!, max: 2 });

export const capabilities = [
  defineCapability({
    name: 'effects.record', version: '1.0.0', description: 'Record a key, once', effects: 'write',
    input: z.object({ key: z.string() }), output: z.string(),
    handler: async ({ key }) => {
      await pool.query(`INSERT INTO ${schema}.effects (key, attempts) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET attempts = effects.attempts + 1`, [key]);
      return `recorded ${key}`;
    },
  }),
  defineCapability({
    name: 'effects.pay', version: '1.0.0', description: 'Pay', effects: 'external',
    input: z.object({ cents: z.number() }), output: z.string(),
    handler: async ({ cents }) => `paid ${cents}`,
  }),
  defineCapability({
    name: 'effects.wait', version: '1.0.0', description: 'Wait until cancelled', effects: 'read', timeoutMs: 120_000,
    input: z.object({}), output: z.string(),
    handler: ({}, { signal }) => new Promise<string>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
  }),
];
