import { describe, expect, it } from 'vitest';
import { assign, createActor, sendTo, setup, waitFor, type EventObject } from 'xstate';
import { layersActor, type LayerService, type LayerServices } from '../../actors/layers.actor.js';
import { answers } from '../../machines/run/requests.js';
import type { AcceptedRequest, LayerAnswer, LayerRequest, ModelResponse } from '../../machines/run/types.js';
import { isRunchartError, RunchartError } from '../../src/errors.js';
import type { ExecuteResult } from '../../src/execution/contract.js';
import type { RecallResult } from '../../src/memory/contract.js';
import type { PolicyDecision } from '../../src/policy/contract.js';

// ---------------------------------------------------------------------------------------------
// Fixtures: one request of each kind, and an output for each service that has one.
// ---------------------------------------------------------------------------------------------

const requestOf = {
  'request.accept': {
    type: 'request.accept',
    input: {
      runId: 'r1',
      request: { input: 'hello' },
      settings: {
        model: 'test-model',
        systemPrompt: 'be brief',
        maxToolHops: 4,
        maxToolCallsPerStep: 4,
        maxTotalTokens: null,
        precheckRequired: false,
        backgroundUpdates: false,
        recallLimit: 5,
        maxToolArgumentChars: 1000,
      },
    },
  },
  'policy.evaluate': { type: 'policy.evaluate', input: { stage: 'precheck', runId: 'r1', tenantId: 'acme', principalId: 'user-7' } },
  'memory.recall': { type: 'memory.recall', input: { tenantId: 'acme', principalId: 'user-7', query: 'hello', limit: 5 } },
  'model.step': { type: 'model.step', input: { model: 'test-model', messages: [{ role: 'user', content: 'hello' }], tools: [], runId: 'r1' } },
  'tool.execute': {
    type: 'tool.execute',
    input: {
      capability: 'math.add',
      version: '1.0.0',
      arguments: '{"a":2,"b":3}',
      argsHash: 'hash-1',
      idempotencyKey: 'r1:c1.0',
      runId: 'r1',
      callId: 'c1.0',
      tenantId: 'acme',
      principalId: 'user-7',
    },
  },
  'background.enqueue': {
    type: 'background.enqueue',
    input: { tasks: [{ id: 'r1:memory', kind: 'memory.write', runId: 'r1', tenantId: 'acme', principalId: 'user-7', payload: {} }] },
  },
  'approval.await': { type: 'approval.await', input: { runId: 'r1', callId: 'c1.0' } },
} satisfies { [Type in LayerRequest['type']]: Extract<LayerRequest, { type: Type }> };

const accepted: AcceptedRequest = { traceId: 't1', tenantId: 'acme', principalId: 'user-7', input: 'hello', capabilities: [] };
const decision: PolicyDecision = { verdict: 'allow', ruleId: 'allow-all', reason: 'test' };
const recalled: RecallResult = { items: [{ id: 'm1', text: 'remembered', score: 1 }], history: [] };
const modelResponse: ModelResponse = { text: 'hi', toolCalls: [], usage: { inputTokens: 3, outputTokens: 1 }, finishReason: 'stop' };
const executed: ExecuteResult = { status: 'ok', output: 5 };

// ---------------------------------------------------------------------------------------------
// Services whose calls are recorded and settled by hand.
// ---------------------------------------------------------------------------------------------

interface Call {
  input: unknown;
  signal: AbortSignal;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type ServiceKey = keyof LayerServices;

function fakeServices() {
  const calls: Record<ServiceKey, Call[]> = {
    acceptRequest: [],
    evaluatePolicy: [],
    recallMemory: [],
    callModel: [],
    executeTool: [],
    enqueueBackground: [],
    awaitApproval: [],
  };
  /** A service that records its call and returns a promise settled only through the recorded call. */
  const service =
    <Input, Output>(key: ServiceKey): LayerService<Input, Output> =>
    (input, { signal }) =>
      new Promise<Output>((resolve, reject) => {
        calls[key].push({ input, signal, resolve: (value) => resolve(value as Output), reject });
      });
  const services: LayerServices = {
    acceptRequest: service('acceptRequest'),
    evaluatePolicy: service('evaluatePolicy'),
    recallMemory: service('recallMemory'),
    callModel: service('callModel'),
    executeTool: service('executeTool'),
    enqueueBackground: service('enqueueBackground'),
    awaitApproval: service('awaitApproval'),
  };
  /** The only call made to `key` so far (fails the test if there is not exactly one). */
  const only = (key: ServiceKey): Call => {
    expect(calls[key]).toHaveLength(1);
    return calls[key][0]!;
  };
  return { services, calls, only };
}

// ---------------------------------------------------------------------------------------------
// A tiny real parent: invokes the actor as `callLayers`, records every event it receives, and
// forwards `ask` requests to the child.
// ---------------------------------------------------------------------------------------------

type ParentEvent = { type: 'ask'; request: LayerRequest } | { type: 'finish' } | LayerAnswer;

function startParent(services: LayerServices) {
  const machine = setup({
    types: {} as { context: { received: EventObject[] }; events: ParentEvent },
    actors: { callLayers: layersActor(services) },
  }).createMachine({
    id: 'parent',
    context: { received: [] },
    invoke: { id: 'callLayers', src: 'callLayers', input: { runId: 'r1' } },
    initial: 'running',
    states: {
      running: { on: { finish: 'finished' } },
      finished: { type: 'final' },
    },
    on: {
      ask: { actions: sendTo('callLayers', ({ event }) => event.request) },
      '*': { actions: assign({ received: ({ context, event }) => [...context.received, event] }) },
    },
  });
  /** Every event the child tried to send its parent, seen by the inspector (even if the parent were to ignore it). */
  const sentBack: EventObject[] = [];
  let child: unknown;
  const actor = createActor(machine, {
    inspect: (inspection) => {
      if (inspection.type === '@xstate.event' && child !== undefined && inspection.sourceRef === child && inspection.actorRef === actor) {
        sentBack.push(inspection.event);
      }
    },
  });
  actor.start();
  child = actor.getSnapshot().children.callLayers;
  expect(child).toBeDefined();
  return {
    actor,
    sentBack,
    ask: (request: LayerRequest) => actor.send({ type: 'ask', request }),
    received: () => actor.getSnapshot().context.received,
    /** Resolves once the parent has received `count` events. */
    receivedCount: (count: number) => waitFor(actor, (snapshot) => snapshot.context.received.length >= count, { timeout: 5_000 }),
  };
}

/** A field of a recorded event, whatever its type. */
const field = (event: EventObject | undefined, key: string): unknown => (event as unknown as Record<string, unknown> | undefined)?.[key];

/** Lets every pending promise callback run (one macrotask turn; no timing involved). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

// ---------------------------------------------------------------------------------------------
// 1. A request reaches its service; the answer comes back as the done event.
// ---------------------------------------------------------------------------------------------

describe('layersActor: answers', () => {
  const withOutput = [
    ['request.accept', 'acceptRequest', 'request.accepted', accepted],
    ['policy.evaluate', 'evaluatePolicy', 'policy.decided', decision],
    ['memory.recall', 'recallMemory', 'memory.recalled', recalled],
    ['model.step', 'callModel', 'model.answered', modelResponse],
    ['tool.execute', 'executeTool', 'tool.executed', executed],
  ] as const;

  it.each(withOutput)('%s calls %s with its input and a live signal, and answers %s with the output', async (type, key, done, output) => {
    const { services, calls, only } = fakeServices();
    const parent = startParent(services);
    const request = requestOf[type];

    parent.ask(request);
    const call = only(key);
    // Only the matching service was called.
    for (const other of Object.keys(calls) as ServiceKey[]) if (other !== key) expect(calls[other]).toHaveLength(0);
    expect(call.input).toBe(request.input);
    expect(call.signal).toBeInstanceOf(AbortSignal);
    expect(call.signal.aborted).toBe(false);
    // Nothing is sent before the service settles.
    await settle();
    expect(parent.received()).toEqual([]);

    call.resolve(output);
    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([{ type: done, output }]);
    expect(parent.received()[0]).toMatchObject({ output: expect.anything() });
    expect(field(parent.received()[0], 'output')).toBe(output);
    parent.actor.stop();
  });

  it.each([
    ['background.enqueue', 'enqueueBackground', 'background.queued'],
    ['approval.await', 'awaitApproval', 'approval.expired'],
  ] as const)('%s answers %s without an output key, even if %s resolves with a value', async (type, key, done) => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf[type]);
    const call = only(key);
    expect(call.input).toBe(requestOf[type].input);
    expect(call.signal.aborted).toBe(false);
    // A value the actor must not forward.
    call.resolve('not forwarded');

    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([{ type: done }]);
    expect(Object.keys(parent.received()[0]!)).toEqual(['type']);
    parent.actor.stop();
  });

  it('answers one request after another over the life of the run (the actor is invoked once)', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);
    const child = parent.actor.getSnapshot().children.callLayers;

    parent.ask(requestOf['policy.evaluate']);
    only('evaluatePolicy').resolve(decision);
    await parent.receivedCount(1);

    parent.ask(requestOf['model.step']);
    only('callModel').resolve(modelResponse);
    await parent.receivedCount(2);

    expect(parent.received()).toStrictEqual([
      { type: 'policy.decided', output: decision },
      { type: 'model.answered', output: modelResponse },
    ]);
    expect(parent.actor.getSnapshot().children.callLayers).toBe(child);
    parent.actor.stop();
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Failures come back as data.
// ---------------------------------------------------------------------------------------------

describe('layersActor: failures as data', () => {
  const failing = Object.entries(answers).map(([type, answer]) => [type as LayerRequest['type'], answer] as const);

  it.each(failing)('%s: a plain Error rejection becomes %o, charged to the layer of the answers table', async (type, answer) => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf[type]);
    only(answer.service).reject(new Error('boom'));

    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([
      { type: answer.failed, error: { kind: 'internal', layer: answer.layer, message: `${answer.layer}: boom`, retryable: false } },
    ]);
    parent.actor.stop();
  });

  it('charges a plain model error to the model layer and keeps its message', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['model.step']);
    only('callModel').reject(new Error('the provider hung up'));

    await parent.receivedCount(1);
    const [event] = parent.received();
    expect(event).toStrictEqual({
      type: 'model.failed',
      error: { kind: 'internal', layer: 'model', message: 'model: the provider hung up', retryable: false },
    });
    // Plain data, not an Error instance.
    const error = field(event, 'error');
    expect(error).not.toBeInstanceOf(Error);
    expect(Object.getPrototypeOf(error)).toBe(Object.prototype);
    parent.actor.stop();
  });

  it('keeps a RunchartError as it is: its own kind, layer, message and retryable', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['tool.execute']);
    only('executeTool').reject(new RunchartError('rate-limited', 'catalog', 'catalog: slow down', { retryable: true }));

    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([
      { type: 'tool.failed', error: { kind: 'rate-limited', layer: 'catalog', message: 'catalog: slow down', retryable: true } },
    ]);
    expect(isRunchartError(field(parent.received()[0], 'error'))).toBe(false);
    parent.actor.stop();
  });

  it('treats a service that throws synchronously like one that rejects', async () => {
    const { services } = fakeServices();
    let seen: { input: unknown; signal: AbortSignal } | undefined;
    const parent = startParent({
      ...services,
      recallMemory: (input, { signal }) => {
        seen = { input, signal };
        throw new Error('index missing');
      },
      evaluatePolicy: () => {
        throw new RunchartError('contract-violation', 'policy', 'policy: bad decision');
      },
    });

    expect(() => parent.ask(requestOf['memory.recall'])).not.toThrow();
    expect(seen?.input).toBe(requestOf['memory.recall'].input);
    expect(seen?.signal.aborted).toBe(false);
    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([
      { type: 'memory.failed', error: { kind: 'internal', layer: 'memory', message: 'memory: index missing', retryable: false } },
    ]);

    parent.ask(requestOf['policy.evaluate']);
    await parent.receivedCount(2);
    expect(parent.received()[1]).toStrictEqual({
      type: 'policy.failed',
      error: { kind: 'contract-violation', layer: 'policy', message: 'policy: bad decision', retryable: false },
    });
    // The actor survives a throwing service: it still answers the next request.
    expect(parent.actor.getSnapshot().children.callLayers?.getSnapshot().status).toBe('active');
    parent.actor.stop();
  });

  it('reports an AbortError from a service as cancelled, charged to the layer', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['memory.recall']);
    only('recallMemory').reject(new DOMException('the operation was aborted', 'AbortError'));

    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([
      { type: 'memory.failed', error: { kind: 'cancelled', layer: 'memory', message: 'memory: the operation was aborted', retryable: false } },
    ]);
    parent.actor.stop();
  });
});

// ---------------------------------------------------------------------------------------------
// 3 and 4. A newer request supersedes the one in flight.
// ---------------------------------------------------------------------------------------------

describe('layersActor: superseding', () => {
  it('aborts an approval wait when a newer request arrives, drops its late answer and delivers the newer one', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['approval.await']);
    const approval = only('awaitApproval');
    expect(approval.signal.aborted).toBe(false);

    parent.ask(requestOf['policy.evaluate']);
    const policy = only('evaluatePolicy');
    // The wait's own signal is aborted, with a cancelled runtime error naming the run ...
    expect(approval.signal.aborted).toBe(true);
    expect(isRunchartError(approval.signal.reason)).toBe(true);
    expect((approval.signal.reason as RunchartError).toData()).toStrictEqual({
      kind: 'cancelled',
      layer: 'runtime',
      message: 'runtime: run r1 stopped waiting for the approval',
      retryable: false,
    });
    // ... while the newer call's signal is untouched.
    expect(policy.signal.aborted).toBe(false);

    // The wait's late answer (here: it expires anyway) is dropped.
    approval.resolve(undefined);
    await settle();
    expect(parent.received()).toEqual([]);
    expect(parent.sentBack).toEqual([]);

    policy.resolve(decision);
    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([{ type: 'policy.decided', output: decision }]);
    expect(parent.sentBack).toStrictEqual([{ type: 'policy.decided', output: decision }]);
    parent.actor.stop();
  });

  it('drops the failure of a superseded approval wait that rejects when its signal aborts', async () => {
    const { services } = fakeServices();
    let waits = 0;
    const parent = startParent({
      ...services,
      // A realistic wait: it settles only when its signal aborts, rejecting with the reason.
      awaitApproval: (_input, { signal }) => {
        waits += 1;
        return new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      },
    });

    parent.ask(requestOf['approval.await']);
    expect(waits).toBe(1);
    parent.ask(requestOf['policy.evaluate']);
    await settle();
    // The rejection (approval.failed) never reaches the parent.
    expect(parent.received()).toEqual([]);
    expect(parent.sentBack).toEqual([]);
    parent.actor.stop();
  });

  it('gives a second approval wait a fresh signal and aborts only the first', async () => {
    const { services, calls } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['approval.await']);
    parent.ask(requestOf['approval.await']);
    expect(calls.awaitApproval).toHaveLength(2);
    const [first, second] = calls.awaitApproval as [Call, Call];
    expect(first.signal.aborted).toBe(true);
    expect(second.signal.aborted).toBe(false);

    first.resolve(undefined);
    await settle();
    expect(parent.received()).toEqual([]);

    second.resolve(undefined);
    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([{ type: 'approval.expired' }]);
    parent.actor.stop();
  });

  it('drops the answer of an older non-approval request, whether it arrives before or after the newer one', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['policy.evaluate']);
    const older = only('evaluatePolicy');
    parent.ask(requestOf['model.step']);
    const newer = only('callModel');

    expect(newer.signal.aborted).toBe(false);

    // The older answer arrives first and is dropped.
    older.resolve(decision);
    await settle();
    expect(parent.received()).toEqual([]);
    expect(parent.sentBack).toEqual([]);

    newer.resolve(modelResponse);
    await parent.receivedCount(1);
    expect(parent.received()).toStrictEqual([{ type: 'model.answered', output: modelResponse }]);
    parent.actor.stop();
  });

  it('drops an older answer that arrives after the newer one, and an older failure too', async () => {
    const { services, calls, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['memory.recall']);
    parent.ask(requestOf['tool.execute']);
    parent.ask(requestOf['policy.evaluate']);
    const recall = only('recallMemory');
    const tool = only('executeTool');
    const policy = only('evaluatePolicy');
    expect(calls.evaluatePolicy).toHaveLength(1);

    policy.resolve(decision);
    await parent.receivedCount(1);

    tool.resolve(executed);
    recall.reject(new Error('too late'));
    await settle();

    expect(parent.received()).toStrictEqual([{ type: 'policy.decided', output: decision }]);
    expect(parent.sentBack).toStrictEqual([{ type: 'policy.decided', output: decision }]);
    parent.actor.stop();
  });

  it('drops the older answer when the same kind of request is sent again', async () => {
    const { services, calls } = fakeServices();
    const parent = startParent(services);
    const second: PolicyDecision = { verdict: 'deny', ruleId: 'deny-all', reason: 'second' };

    parent.ask(requestOf['policy.evaluate']);
    parent.ask({ type: 'policy.evaluate', input: { ...requestOf['policy.evaluate'].input, stage: 'output' } });
    expect(calls.evaluatePolicy).toHaveLength(2);
    const [first, latest] = calls.evaluatePolicy as [Call, Call];

    latest.resolve(second);
    first.resolve(decision);
    await parent.receivedCount(1);
    await settle();

    expect(parent.received()).toStrictEqual([{ type: 'policy.decided', output: second }]);
    parent.actor.stop();
  });
});

// ---------------------------------------------------------------------------------------------
// 5. When the run stops, the in-flight call is aborted and nothing more is sent.
// ---------------------------------------------------------------------------------------------

describe('layersActor: stopping', () => {
  const stoppedReason = { kind: 'cancelled', layer: 'runtime', message: 'runtime: run r1 stopped', retryable: false };

  it('aborts the in-flight call when the parent is stopped, and sends nothing afterwards', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['model.step']);
    const call = only('callModel');
    expect(call.signal.aborted).toBe(false);

    parent.actor.stop();
    expect(call.signal.aborted).toBe(true);
    expect(isRunchartError(call.signal.reason)).toBe(true);
    expect((call.signal.reason as RunchartError).toData()).toStrictEqual(stoppedReason);

    call.resolve(modelResponse);
    await settle();
    expect(parent.sentBack).toEqual([]);
    expect(parent.received()).toEqual([]);
  });

  it('aborts an in-flight approval wait when the parent is stopped, with the run-stopped reason', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['approval.await']);
    const approval = only('awaitApproval');

    parent.actor.stop();
    expect(approval.signal.aborted).toBe(true);
    expect((approval.signal.reason as RunchartError).toData()).toStrictEqual(stoppedReason);

    approval.reject(approval.signal.reason);
    await settle();
    expect(parent.sentBack).toEqual([]);
  });

  it('aborts the in-flight call when the parent reaches a final state, and sends nothing afterwards', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['tool.execute']);
    const call = only('executeTool');

    parent.actor.send({ type: 'finish' });
    expect(parent.actor.getSnapshot().status).toBe('done');
    expect(call.signal.aborted).toBe(true);
    expect((call.signal.reason as RunchartError).toData()).toStrictEqual(stoppedReason);

    call.reject(new Error('aborted'));
    await settle();
    expect(parent.sentBack).toEqual([]);
    expect(parent.received()).toEqual([]);
  });

  // A superseded call (not an approval wait) keeps the run's signal; the run stopping must abort it
  // even after the newer request was answered. (In the chart, `run.resume` re-asks a request.)
  it('aborts a superseded call that is still running when the run stops after the newer answer', async () => {
    const { services, calls } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['model.step']);
    parent.ask(requestOf['model.step']);
    expect(calls.callModel).toHaveLength(2);
    const [older, newer] = calls.callModel as [Call, Call];
    newer.resolve(modelResponse);
    await parent.receivedCount(1);

    parent.actor.stop();
    // The older call never settled; the run is over, so its signal must be aborted.
    expect(older.signal.aborted).toBe(true);
  });

  it('leaves a call alone while the parent runs (the signal aborts only at the stop)', async () => {
    const { services, only } = fakeServices();
    const parent = startParent(services);

    parent.ask(requestOf['memory.recall']);
    const call = only('recallMemory');
    await settle();
    expect(call.signal.aborted).toBe(false);

    parent.actor.stop();
    expect(call.signal.aborted).toBe(true);
  });
});
