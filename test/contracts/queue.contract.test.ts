import { createMemoryQueue } from '../../src/background/queue.js';
import { describeQueueContract } from './queue.contract.js';

describeQueueContract('in-process', async ({ handlers, onGiveUp }) => createMemoryQueue({ handlers, onGiveUp, retries: 1, backoffMs: 1 }));
