import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRunchartError, type ModelRequest } from '../../src/index.js';
import { parseRecording, readRecording, type RecordedEvent } from '../../src/inspect/recorder.js';
import { tempDir } from '../support/temp.js';
import { allowMath, allowRuns, approvedRun, mathNeedsApproval, recordedRuntime, recordingPath } from './recorded-run.js';

type Line = RecordedEvent & Record<string, any>;
/** The run actors of a recording: their parent, the runtime's actor, is in no recording. */
const runsOf = (events: Line[]) => {
  const sessions = new Set(events.map((event) => event.sessionId));
  return events.filter((event) => event.type === '@xstate.actor' && !sessions.has(event.parentId));
};
const rootOf = (events: Line[]) => runsOf(events)[0]!;
const rootSnapshots = (events: Line[], root: string) => events.filter((event) => event.type === '@xstate.snapshot' && event.sessionId === root);

describe('createRunRecorder', () => {
  it('records a run as JSONL of the Stately inspection protocol, with a timestamp on every line', async () => {
    const dir = await tempDir();
    const { runtime, recorder } = recordedRuntime(dir, {
      rules: [allowRuns, allowMath],
      steps: [{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: '2+3 is 5' }],
    });
    const result = await runtime.run({ input: 'what is 2+3?', tenantId: 'acme', principalId: 'user-7' });
    await runtime.drain();
    await recorder.flush();
    await runtime.close();

    expect(await readdir(join(dir, 'inspect'))).toEqual([`${result.runId}.jsonl`]);
    const text = await readFile(recordingPath(dir, result.runId), 'utf8');
    const events = (await readRecording(recordingPath(dir, result.runId))) as Line[];
    expect(text.trimEnd().split('\n')).toHaveLength(events.length);
    expect(new Set(events.map((event) => event.type))).toEqual(new Set(['@xstate.actor', '@xstate.event', '@xstate.snapshot']));
    expect(events.every((event) => event.runId === result.runId && typeof event._version === 'string')).toBe(true);

    // The run comes first, a child of the runtime's actor (which is in no recording); every other
    // actor is a layer call of the run, one per call, or its telemetry.
    const root = rootOf(events);
    expect(events[0]).toBe(root);
    expect(root).toMatchObject({ name: result.runId, sessionId: root.sessionId });
    expect(typeof root.parentId).toBe('string');
    expect(JSON.parse(root.definition as string)).toMatchObject({ id: 'run', initial: 'ingress' });
    expect(new Set(events.map((event) => event.rootId)).size).toBe(1);
    const children = events.filter((event) => event.type === '@xstate.actor' && event !== root);
    expect(children.every((event) => event.parentId === root.sessionId)).toBe(true);
    expect(children.map((event) => event.name)).toEqual([
      'telemetry',
      'acceptRequest',
      'checkPrecheck',
      'recallMemory',
      'callModel',
      'authorizeTool',
      'executeTool',
      'callModel',
      'checkOutput',
      'authorizeWrite',
      'enqueueBackground',
    ]);

    // The answers the run took, each from the layer call its state invoked.
    const sent = events.filter((event) => event.type === '@xstate.event' && event.sessionId === root.sessionId).map((event) => event.event.type);
    expect(sent.filter((type) => type.startsWith('xstate.done.actor.'))).toEqual([
      'xstate.done.actor.acceptRequest',
      'xstate.done.actor.checkPrecheck',
      'xstate.done.actor.recallMemory',
      'xstate.done.actor.callModel',
      'xstate.done.actor.authorizeTool',
      'xstate.done.actor.executeTool',
      'xstate.done.actor.callModel',
      'xstate.done.actor.checkOutput',
      'xstate.done.actor.authorizeWrite',
      'xstate.done.actor.enqueueBackground',
    ]);
    const states = rootSnapshots(events, root.sessionId).map((event) => JSON.stringify(event.snapshot.value));
    expect([...new Set(states)]).toEqual(
      ['"ingress"', '"policy"', '"retrieval"', '"modelStep"', '{"toolExecution":"authorizing"}', '{"toolExecution":"executing"}', '"assembly"', '{"background":"authorizing"}', '{"background":"queueing"}', '"completed"'],
    );
    const last = rootSnapshots(events, root.sessionId).at(-1)!;
    expect(last.snapshot).toMatchObject({ status: 'done', value: 'completed', context: { runId: result.runId, output: '2+3 is 5' } });
    expect(last.snapshot.context.decisions).toEqual(result.decisions);

    // Timestamps come from the injected clock, in order; createdAt (the protocol's field) agrees.
    const times = events.map((event) => event.timestamp);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(events.every((event) => event.createdAt === String(event.timestamp))).toBe(true);
    expect(times[0]).toBeGreaterThan(Date.UTC(2026, 0, 2));
  });

  it('writes plain JSON: child actors are references, errors keep their message', async () => {
    const dir = await tempDir();
    const { runtime, recorder } = recordedRuntime(dir, { rules: [allowRuns], steps: [{ error: new Error('the model is down') }] });
    const result = await runtime.run({ input: 'hello', tenantId: 'acme', principalId: 'user-7' });
    await runtime.drain();
    await recorder.flush();
    await runtime.close();

    expect(result.status).toBe('failed');
    const events = (await readRecording(recordingPath(dir, result.runId))) as Line[];
    const failure = events.find((event) => event.type === '@xstate.event' && event.event.type === 'xstate.error.actor.callModel')!;
    expect(failure.event.error).toMatchObject({ message: expect.stringContaining('the model is down') });
    const root = rootOf(events);
    const snapshot = rootSnapshots(events, root.sessionId).find((event) => Object.keys(event.snapshot.children ?? {}).length > 0)!;
    for (const child of Object.values(snapshot.snapshot.children as Record<string, unknown>)) expect(child).toMatchObject({ xstate$$type: 1, id: expect.any(String) });
    // A JSON round trip changes nothing: no functions, no class instances, no undefined holes.
    for (const event of events) expect(JSON.parse(JSON.stringify(event))).toEqual(event);
  });

  it('keeps two concurrent runs in two files', async () => {
    const dir = await tempDir();
    const echo = (request: ModelRequest) => ({
      text: `echo: ${request.messages.findLast((message) => message.role === 'user')?.content}`,
      toolCalls: [],
      usage: { inputTokens: 1, outputTokens: 1 },
      finishReason: 'stop',
    });
    const { runtime, recorder } = recordedRuntime(dir, { rules: [allowRuns], steps: [echo, echo], delayMs: 20 });
    const first = runtime.start({ input: 'first', tenantId: 'acme', principalId: 'user-1' });
    const second = runtime.start({ input: 'second', tenantId: 'acme', principalId: 'user-2' });
    const results = await Promise.all([first.result, second.result]);
    await runtime.drain();
    await recorder.flush();
    await runtime.close();

    expect((await readdir(join(dir, 'inspect'))).sort()).toEqual([`${first.runId}.jsonl`, `${second.runId}.jsonl`].sort());
    const sessions: Set<string>[] = [];
    for (const [index, result] of results.entries()) {
      const events = (await readRecording(recordingPath(dir, result.runId))) as Line[];
      const root = rootOf(events);
      expect(events.every((event) => event.runId === result.runId)).toBe(true);
      const last = rootSnapshots(events, root.sessionId).at(-1)!;
      expect(last.snapshot.context).toMatchObject({ runId: result.runId, accepted: { principalId: `user-${index + 1}` }, output: `echo: ${index === 0 ? 'first' : 'second'}` });
      sessions.push(new Set(events.map((event) => event.sessionId)));
    }
    expect([...sessions[0]!].filter((session) => sessions[1]!.has(session))).toEqual([]);
  });

  it('appends a run restored in another runtime (an approval after a restart) to the same file', async () => {
    const dir = await tempDir();
    const { parked, done, path } = await approvedRun(dir);
    expect(parked.status).toBe('awaiting_approval');
    expect(done.status).toBe('completed');

    const events = (await readRecording(path)) as Line[];
    const roots = runsOf(events);
    expect(roots).toHaveLength(2);
    const approve = events.find((event) => event.type === '@xstate.event' && event.event.type === 'tool.approve')!;
    expect(approve.event).toMatchObject({ callId: parked.toolCalls[0]!.callId, principalId: 'manager' });
    expect(events.indexOf(approve)).toBeGreaterThan(events.indexOf(roots[1]!));
    const last = rootSnapshots(events, roots[1]!.sessionId).at(-1)!;
    expect(last.snapshot).toMatchObject({ value: 'completed', context: { output: '2+3 is 5' } });
  });
});

describe('createRunRecorder as the run goes', () => {
  it('writes the run machine definition once per recording, and every other actor by name alone', async () => {
    const dir = await tempDir();
    const { runtime, recorder } = recordedRuntime(dir, {
      rules: [allowRuns, allowMath],
      steps: [{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: '2+3 is 5' }],
    });
    const result = await runtime.run({ input: 'what is 2+3?', tenantId: 'acme', principalId: 'user-7' });
    await recorder.flush();
    await runtime.close();
    const actors = ((await readRecording(recordingPath(dir, result.runId))) as Line[]).filter((event) => event.type === '@xstate.actor');
    const machines = actors.filter((event) => typeof event.definition === 'string' && 'states' in JSON.parse(event.definition));
    expect(machines).toHaveLength(1);
    for (const actor of actors) if (!machines.includes(actor)) expect(JSON.parse(actor.definition as string)).toEqual({ id: actor.name });
  });

  it('has a parked run on disk as soon as it parks, with no flush', async () => {
    const dir = await tempDir();
    const { runtime } = recordedRuntime(dir, { rules: [allowRuns, mathNeedsApproval], steps: [{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }] });
    const parked = await runtime.run({ input: 'what is 2+3?', tenantId: 'acme', principalId: 'user-7' });
    await new Promise((resolve) => setImmediate(resolve));
    const events = parseRecording(await readFile(recordingPath(dir, parked.runId), 'utf8')) as Line[];
    const last = rootSnapshots(events, rootOf(events).sessionId).at(-1)!;
    expect(last.snapshot.value).toEqual({ toolExecution: 'awaitingApproval' });
    await runtime.close();
  });

  it('drops lines past maxQueuedBytes with one warning, and still writes what fits', async () => {
    const { createRuntime } = await import('../../src/index.js');
    const { createRunRecorder } = await import('../../src/inspect/recorder.js');
    const { scriptedModel } = await import('../../src/testing/index.js');
    const dir = await tempDir();
    const warnings: string[] = [];
    const recorder = createRunRecorder({ dir, maxQueuedBytes: 2_000, onError: (message) => warnings.push(message) });
    const runtime = createRuntime({ inspect: recorder.inspect, config: { store: { kind: 'memory' }, policy: { rules: [allowRuns] } }, model: scriptedModel([{ text: 'one' }]) });
    const result = await runtime.run({ input: 'a', tenantId: 'acme', principalId: 'u' });
    await recorder.flush();
    await runtime.close();
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings.every((warning) => /more than 2000 bytes of recording lines wait/.test(warning))).toBe(true);
    // Each time lines pile up past the bound it warns once; what fits is still written.
    const lines = parseRecording(await readFile(recordingPath(dir, result.runId), 'utf8'));
    expect(lines.length).toBeGreaterThan(0);
  });
});

describe('createRunRecorder({ keep })', () => {
  it('keeps the newest recordings up to `keep`, removing those written longest ago (older files in the folder first)', async () => {
    const { mkdir, utimes, writeFile } = await import('node:fs/promises');
    const { createRuntime } = await import('../../src/index.js');
    const { createRunRecorder } = await import('../../src/inspect/recorder.js');
    const { scriptedModel } = await import('../../src/testing/index.js');
    const dir = await tempDir();
    await mkdir(join(dir, 'inspect'));
    const old = join(dir, 'inspect', 'from-last-week.jsonl');
    await writeFile(old, '\n');
    await utimes(old, new Date(Date.now() - 7 * 86_400_000), new Date(Date.now() - 7 * 86_400_000));
    await writeFile(join(dir, 'inspect', 'notes.txt'), 'not a recording');

    const recorder = createRunRecorder({ dir, keep: 2 });
    const runtime = createRuntime({
      inspect: recorder.inspect,
      config: { store: { kind: 'memory' }, policy: { rules: [allowRuns] } },
      model: scriptedModel([{ text: 'one' }, { text: 'two' }, { text: 'three' }]),
    });
    const ids: string[] = [];
    for (const input of ['a', 'b', 'c']) {
      ids.push((await runtime.run({ input, tenantId: 'acme', principalId: 'u' })).runId);
      await recorder.flush();
    }
    await runtime.close();
    expect((await readdir(join(dir, 'inspect'))).sort()).toEqual([`${ids[1]}.jsonl`, `${ids[2]}.jsonl`, 'notes.txt'].sort());
  });
});

describe('parseRecording', () => {
  it('names the line that is not an inspection event', () => {
    const good = JSON.stringify({ type: '@xstate.event', timestamp: 1, runId: 'r', sessionId: 'x:0', createdAt: '1', _version: '0.7.2', event: { type: 'a' } });
    expect(parseRecording(`${good}\n\n${good}\n`)).toHaveLength(2);
    for (const bad of ['{"type":"@xstate.event"}', 'not json']) {
      let error: unknown;
      try {
        parseRecording(`${good}\n${bad}\n`, 'run.jsonl');
      } catch (caught) {
        error = caught;
      }
      expect(isRunchartError(error)).toBe(true);
      expect((error as Error).message).toMatch(/^inspect: line 2 of run\.jsonl is not/);
    }
  });
});
