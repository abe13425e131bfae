// runchart/testing: strict fakes for the layers, for your tests and ours.
export { scriptedModel, type ScriptedModel, type ScriptedStep } from './scripted-model.js';
export { recordingTelemetry, scriptedPolicy, type RecordedRun } from './fakes.js';
export { createInMemoryMemory } from '../memory/in-memory.js';
export { createInMemoryRunStore } from '../store/in-memory.js';
export { createMemoryQueue } from '../background/queue.js';
export { createMemoryJournal } from '../execution/gateway.js';
