import { z } from 'zod';
import { defineCapability } from './capability.js';

const Pair = z.object({ a: z.number().describe('the first number'), b: z.number().describe('the second number') });

/** Arithmetic capabilities shipped with the starter config and used by the offline demo model. */
export const mathCapabilities = [
  defineCapability({ name: 'math.add', version: '1.0.0', description: 'Add two numbers: a + b', input: Pair, output: z.number(), effects: 'read', handler: ({ a, b }) => a + b }),
  defineCapability({ name: 'math.subtract', version: '1.0.0', description: 'Subtract two numbers: a - b', input: Pair, output: z.number(), effects: 'read', handler: ({ a, b }) => a - b }),
  defineCapability({ name: 'math.multiply', version: '1.0.0', description: 'Multiply two numbers: a * b', input: Pair, output: z.number(), effects: 'read', handler: ({ a, b }) => a * b }),
  defineCapability({
    name: 'math.divide',
    version: '1.0.0',
    description: 'Divide two numbers: a / b (b must not be 0)',
    input: Pair.refine((pair) => pair.b !== 0, { message: 'b must not be 0', path: ['b'] }),
    output: z.number(),
    effects: 'read',
    handler: ({ a, b }) => a / b,
  }),
];
