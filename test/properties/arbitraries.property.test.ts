import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PinnedCapability } from '../../src/catalog/contract.js';
import { RunchartErrorData } from '../../src/errors.js';
import { ExecuteResult } from '../../src/execution/contract.js';
import { RecallResult } from '../../src/memory/contract.js';
import { ModelResponse } from '../../src/models/contract.js';
import { PolicyDecision } from '../../src/policy/contract.js';
import { planToolCalls } from '../../machines/run/plan.js';
import {
  acceptedRequest,
  executeResult,
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

  it('generate chart events whose outputs meet the contract of the layer they claim to come from, and errors as data', () => {
    const contracts: Record<string, { parse(value: unknown): unknown }> = {
      'policy.decided': PolicyDecision,
      'memory.recalled': RecallResult,
      'model.answered': ModelResponse,
      'tool.executed': ExecuteResult,
    };
    fc.assert(
      fc.property(runEvent, (event) => {
        contracts[event.type]?.parse((event as { output?: unknown }).output);
        if (event.type.endsWith('.failed') || event.type === 'request.refused') RunchartErrorData.parse((event as { error?: unknown }).error);
      }),
      { numRuns: 200 },
    );
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
});
