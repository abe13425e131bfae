import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PinnedCapability } from '../../src/catalog/contract.js';
import { ExecuteResult } from '../../src/execution/contract.js';
import { RecallResult } from '../../src/memory/contract.js';
import { ModelResponse } from '../../src/models/contract.js';
import { PolicyDecision } from '../../src/policy/contract.js';
import { runMachine } from '../../machines/run/machine.js';
import { planToolCalls } from '../../machines/run/plan.js';
import {
  acceptedRequest,
  executeResult,
  invokeIds,
  mayRefuse,
  malformedArguments,
  modelResponse,
  pinnedProbe,
  policyDecision,
  ProbeInput,
  probe,
  recallResult,
  runEvent,
  scenario,
  schemaViolatingArguments,
  scriptOf,
  stepKinds,
  terminalKinds,
  unknownToolName,
  validArguments,
} from '../support/arbitraries.js';
import { invokedActors } from '../support/graph.js';

/** Parses as a JSON object the probe's schema accepts. */
const probeAccepts = (text: string) => {
  try {
    return ProbeInput.safeParse(JSON.parse(text)).success;
  } catch {
    return false;
  }
};

describe('the arbitraries', () => {
  it.each(stepKinds)('generate %s model responses that meet the ModelResponse contract', (kind) => {
    fc.assert(
      fc.property(modelResponse(kind), (response) => {
        expect(ModelResponse.parse(response)).toEqual(response);
      }),
      { numRuns: 50 },
    );
  });

  it('generate model responses of the kind they claim', () => {
    fc.assert(
      fc.property(fc.constantFrom(...stepKinds).chain((kind) => modelResponse(kind).map((response) => ({ kind, response }))), ({ kind, response }) => {
        const planned = planToolCalls(response.toolCalls, [pinnedProbe], 0, 16_000);
        switch (kind) {
          case 'final':
            expect(response.toolCalls).toEqual([]);
            expect(response.text).toBeTruthy();
            break;
          case 'empty':
            expect(response.toolCalls).toEqual([]);
            expect(response.text).toBeFalsy();
            break;
          case 'twoCalls':
            expect(response.toolCalls).toHaveLength(2);
            break;
          case 'validCall':
            expect(planned[0]!.problem).toBeNull();
            expect(probeAccepts(response.toolCalls[0]!.arguments)).toBe(true);
            break;
          case 'schemaViolation':
            // Reaches policy and the gateway (a JSON object), which refuses it.
            expect(planned[0]!.problem).toBeNull();
            expect(probeAccepts(response.toolCalls[0]!.arguments)).toBe(false);
            break;
          case 'malformedJson':
          case 'unknownTool':
            // Never reaches policy or the gateway.
            expect(planned[0]!.problem).not.toBeNull();
            break;
          case 'truncated':
          case 'filtered':
            expect(response.toolCalls).toEqual([]);
            expect(response.finishReason).toBe(kind === 'truncated' ? 'length' : 'content_filter');
            break;
          case 'overBudget':
            // Over the scenarios' max_total_tokens of 1,000 on its own.
            expect(response.usage.inputTokens + response.usage.outputTokens).toBeGreaterThan(1_000);
            break;
          case 'modelError':
            // Never answered: the scripted model throws instead.
            expect(response.toolCalls).toEqual([]);
            break;
        }
      }),
      { numRuns: 200 },
    );
  });

  it('generate arguments on the side of the probe schema they claim', () => {
    fc.assert(fc.property(validArguments, (text) => probeAccepts(text)));
    fc.assert(fc.property(schemaViolatingArguments, (text) => !probeAccepts(text)));
    fc.assert(fc.property(malformedArguments, (text) => !probeAccepts(text)));
    fc.assert(fc.property(unknownToolName, (name) => name !== probe.toolName));
  });

  it('generate layer outputs that meet their contracts', () => {
    fc.assert(fc.property(policyDecision, (decision) => void expect(PolicyDecision.parse(decision)).toEqual(decision)));
    fc.assert(fc.property(recallResult, (result) => void expect(RecallResult.parse(result)).toEqual(result)));
    fc.assert(fc.property(executeResult, (result) => void expect(ExecuteResult.parse(result)).toEqual(result)));
    fc.assert(fc.property(acceptedRequest, (request) => request.capabilities.forEach((capability) => void PinnedCapability.parse(capability))));
  });

  it('generate an answer and a failure for every layer call the chart invokes', () => {
    expect(invokeIds.sort()).toEqual(invokedActors().filter(({ src }) => src !== 'recordTelemetry').map(({ id }) => id).sort());
  });

  it('generate chart events the chart handles: answers that meet the contract of the call they answer, failures as errors', () => {
    const contracts: Record<string, { parse(value: unknown): unknown }> = {
      checkPrecheck: PolicyDecision,
      authorizeTool: PolicyDecision,
      reviewApproval: PolicyDecision,
      checkOutput: PolicyDecision,
      authorizeWrite: PolicyDecision,
      recallMemory: RecallResult,
      callModel: ModelResponse,
      executeTool: ExecuteResult,
    };
    const handled = new Set<string>(runMachine.events);
    const seen = new Set<string>();
    fc.assert(
      fc.property(runEvent, (event) => {
        expect(handled.has(event.type), event.type).toBe(true);
        seen.add(event.type);
        const answered = /^xstate\.done\.actor\.(.+)$/.exec(event.type)?.[1];
        if (answered) contracts[answered]?.parse((event as { output?: unknown }).output);
        if (answered === 'acceptRequest') (event as unknown as { output: { capabilities: unknown[] } }).output.capabilities.forEach((capability) => void PinnedCapability.parse(capability));
        if (event.type.startsWith('xstate.error.actor.')) expect((event as { error?: unknown }).error).toBeInstanceOf(Error);
      }),
      { numRuns: 3_000 },
    );
    // Over 3,000 draws every kind of event shows up (the rarest, one call's failure, about 18 times).
    expect([...handled].filter((type) => !seen.has(type))).toEqual([]);
  });

  it('generate scenarios whose script fits the hop budget and stops at its first terminal step', () => {
    fc.assert(
      fc.property(scenario, (value) => {
        const script = scriptOf(value);
        expect(script.length).toBeGreaterThan(0);
        expect(script.length).toBeLessThanOrEqual(value.maxToolHops + 1);
        expect(script.slice(0, -1).every((step) => !terminalKinds.has(step.kind))).toBe(true);
        for (const step of script) ModelResponse.parse(step.response);
      }),
      { numRuns: 200 },
    );
  });

  it('generate a refused reviewer only first, and only where the enumeration walks its way back', () => {
    let refusals = 0;
    fc.assert(
      fc.property(scenario, (value) => {
        expect(value.approvals.slice(1)).not.toContain('refuse');
        if (value.approvals[0] === 'refuse') {
          refusals++;
          expect(mayRefuse(value)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
    expect(refusals).toBeGreaterThan(0);
  });
});
