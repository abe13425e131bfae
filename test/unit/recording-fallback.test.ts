import { describe, expect, it } from 'vitest';
import { completeRecording, type StoredRun } from '../../src/inspect/fallback.js';
import { parseRecording } from '../../src/inspect/recorder.js';
import { WITHHELD, withholdModelText } from '../../src/inspect/withhold.js';

const decision = (stage: string, verdict: string) => ({ stage, verdict, ruleId: stage, reason: '' });
const context = (output: string | null, decisions: object[]) => ({
  runId: 'r1',
  accepted: { tenantId: 'acme', principalId: 'u' },
  decisions,
  output,
  messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'secret answer', toolCalls: [] }],
});
const line = (fields: object) => JSON.stringify({ runId: 'r1', sessionId: 'x:1', timestamp: 1, createdAt: '1', _version: '0.7.2', ...fields });
const actor = line({ type: '@xstate.actor', name: 'r1', parentId: 'x:0' });
const snapshotLine = (value: unknown, decisions: object[]) => line({ type: '@xstate.snapshot', snapshot: { value, context: context('secret answer', decisions) } });

describe('completeRecording', () => {
  const completed: StoredRun = { runId: 'r1', updatedAt: 5, snapshot: { value: 'completed', context: context('secret answer', [decision('output', 'allow')]) } };

  it('leaves a recording that reached the stored state as it is', () => {
    const recording = `${actor}\n${snapshotLine('completed', [decision('output', 'allow')])}\n`;
    expect(completeRecording(recording, completed)).toEqual({ text: recording, note: null });
  });

  it('adds the stored run after the readable lines of a recording cut short, under a note', () => {
    const recording = `${actor}\n${snapshotLine('modelStep', [])}\n${snapshotLine('completed', []).slice(0, 30)}`;
    const { text, note } = completeRecording(recording, completed);
    expect(note).toMatch(/incomplete \(its recording ends before the state the store holds\)/);
    const lines = parseRecording(text);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ type: '@xstate.snapshot', sessionId: 'x:1', note, snapshot: { value: 'completed', context: { output: 'secret answer' } } });
  });

  it('notes unreadable lines even when the recording reached the stored state', () => {
    const recording = `${actor}\nnot json\n${snapshotLine('completed', [decision('output', 'allow')])}\n`;
    expect(completeRecording(recording, completed).note).toMatch(/incomplete \(1 line of its recording could not be read\)/);
  });

  it('draws a run with no recording from the store, its answer withheld when the output was not allowed', () => {
    const denied: StoredRun = { runId: 'r1', updatedAt: 5, snapshot: { value: 'denied', context: context('secret answer', [decision('output', 'deny')]) } };
    const { text, note } = completeRecording('', denied);
    expect(note).toMatch(/there is no recording of it/);
    const lines = parseRecording(text);
    expect(lines.map((event) => event.type)).toEqual(['@xstate.actor', '@xstate.snapshot']);
    expect(text).not.toContain('secret answer');
    expect(lines[1]).toMatchObject({ snapshot: { context: { output: WITHHELD, messages: [{ content: 'hi' }, { content: WITHHELD }] } } });
  });
});

describe('withholdModelText', () => {
  it('replaces assistant content, an answer, a model.step mark and a context output, and nothing else', () => {
    const value = {
      event: { type: 'xstate.done.actor.callModel', output: { text: 'secret', toolCalls: [], finishReason: 'stop' } },
      mark: { kind: 'model.step', text: 'secret', toolCalls: 0 },
      other: { text: 'a tool result', role: 'tool', content: 'kept' },
      context: context('secret', []),
    };
    const withheld = withholdModelText(structuredClone(value));
    expect(JSON.stringify(withheld)).not.toContain('secret');
    expect(withheld.other).toEqual(value.other);
    expect(withheld.context.messages[0]).toEqual({ role: 'user', content: 'hi' });
  });
});
