import { describe, expect, it } from 'vitest';
import { isRunchartError, type RunchartError } from '../../src/errors.js';
import { parseRunRequest, parseTraceparent, traceContextFor, type RunRequest } from '../../src/ingress/request.js';

const options = { maxInputChars: 100, requireTraceId: false };
const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
const spanId = '00f067aa0ba902b7';
const traceparent = `00-${traceId}-${spanId}-01`;
const base = { input: 'What is 2 + 3?', tenantId: 'acme', principalId: 'user-7' };

function ingressErrorOf(value: unknown, parseOptions = options): RunchartError {
  try {
    parseRunRequest(value, parseOptions);
  } catch (error) {
    expect(isRunchartError(error)).toBe(true);
    const failure = error as RunchartError;
    expect(failure.kind).toBe('invalid-input');
    expect(failure.layer).toBe('ingress');
    expect(failure.message).toMatch(/^ingress: /);
    return failure;
  }
  throw new Error('expected the request to be rejected');
}

describe('parseRunRequest', () => {
  it('accepts a minimal request as it is', () => {
    expect(parseRunRequest(base, options)).toEqual(base);
  });

  it('says of a missing, empty or mistyped identity what it names, once per field', () => {
    const { tenantId: _tenant, ...noTenant } = base;
    expect(ingressErrorOf(noTenant).message).toBe('ingress: the request is invalid: tenantId: required: the tenant the run acts for');
    expect(ingressErrorOf({ ...base, tenantId: '', principalId: 7 }).message).toBe(
      'ingress: the request is invalid: tenantId: empty: name the tenant the run acts for; principalId: a string naming who asks: the user or service the run acts for',
    );
    const { input: _input, ...noInput } = base;
    expect(ingressErrorOf(noInput).message).toBe('ingress: the request is invalid: input: required: the question or task, as a string');
    expect(ingressErrorOf({ ...base, input: 5 }).message).toBe('ingress: the request is invalid: input: the question or task, as a string');
    expect(ingressErrorOf({ ...base, tenantId: 'a'.repeat(300) }).message).toBe('ingress: the request is invalid: tenantId: at most 256 characters');
  });

  it('gives a malformed traceparent one reason: the form, or what W3C forbids in it', () => {
    expect(ingressErrorOf({ ...base, traceparent: 'bogus' }).message).toBe(
      'ingress: the request is invalid: traceparent: use the W3C form "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"',
    );
    expect(ingressErrorOf({ ...base, traceparent: `ff-${traceId}-${spanId}-01` }).message).toBe(
      'ingress: the request is invalid: traceparent: version ff and all-zero trace or span ids are invalid',
    );
  });

  it('accepts a session, a trace id and a traceparent', () => {
    const request = { ...base, sessionId: 'session-1', traceId, traceparent };
    expect(parseRunRequest(request, options)).toEqual(request);
  });

  it.each(['tenantId', 'principalId', 'input'] as const)('rejects a request without %s, naming the field', (field) => {
    const { [field]: _omitted, ...rest } = base;
    expect(ingressErrorOf(rest).message).toContain(`${field}:`);
  });

  it('rejects empty identities, naming the field', () => {
    expect(ingressErrorOf({ ...base, tenantId: '' }).message).toContain('tenantId:');
    expect(ingressErrorOf({ ...base, principalId: '' }).message).toContain('principalId:');
    expect(ingressErrorOf({ ...base, sessionId: '' }).message).toContain('sessionId:');
  });

  it('rejects identities that a rule glob could misread', () => {
    for (const tenantId of ['ac me', 'acme*', 'ac?me', ' acme', 'a\tb']) {
      expect(ingressErrorOf({ ...base, tenantId }).message).toContain('tenantId:');
    }
    expect(ingressErrorOf({ ...base, principalId: '*' }).message).toContain('principalId:');
  });

  it('rejects an identity over 256 characters', () => {
    expect(ingressErrorOf({ ...base, principalId: 'u'.repeat(257) }).message).toContain('principalId:');
    expect(parseRunRequest({ ...base, principalId: 'u'.repeat(256) }, options).principalId).toHaveLength(256);
  });

  it('rejects mistyped fields, naming them', () => {
    expect(ingressErrorOf({ ...base, tenantId: 7 }).message).toContain('tenantId:');
    expect(ingressErrorOf({ ...base, input: ['a'] }).message).toContain('input:');
  });

  it('rejects an unknown field, naming it', () => {
    const error = ingressErrorOf({ ...base, tenant: 'acme' });
    expect(error.message).toContain('tenant');
    expect(ingressErrorOf({ ...base, model: 'gpt-5.4' }).message).toContain('model');
  });

  it('rejects something that is not an object', () => {
    ingressErrorOf(null);
    ingressErrorOf(undefined);
    ingressErrorOf('hello');
    ingressErrorOf([base]);
  });

  it('rejects an empty input with a message that says so', () => {
    const error = ingressErrorOf({ ...base, input: '' });
    expect(error.message).toContain('input:');
    expect(error.message).toContain('empty');
  });

  it('accepts an input exactly at the limit and rejects one over it', () => {
    expect(parseRunRequest({ ...base, input: 'x'.repeat(100) }, options).input).toHaveLength(100);
    const error = ingressErrorOf({ ...base, input: 'x'.repeat(101) });
    expect(error.message).toContain('input:');
    expect(error.message).toContain('101');
    expect(error.message).toContain('100');
    expect(error.message).toContain('limits.max_input_chars');
  });

  it('keeps the zod issues as the cause of a schema error', () => {
    expect(ingressErrorOf({ ...base, tenantId: '' }).cause).toBeDefined();
  });

  describe('with require_trace_id', () => {
    const strict = { maxInputChars: 100, requireTraceId: true };

    it('rejects a request without traceId or traceparent, naming the setting', () => {
      const error = ingressErrorOf(base, strict);
      expect(error.message).toContain('require_trace_id');
      expect(error.message).toContain('traceId');
    });

    it('accepts a traceId or a traceparent', () => {
      expect(parseRunRequest({ ...base, traceId }, strict).traceId).toBe(traceId);
      expect(parseRunRequest({ ...base, traceparent }, strict).traceparent).toBe(traceparent);
    });

    it('does not require a trace when the setting is off', () => {
      expect(parseRunRequest(base, options)).toEqual(base);
    });

    it('does not accept a traceparent that carries no usable trace', () => {
      const unusable = [`ff-${traceId}-${spanId}-01`, `00-${'0'.repeat(32)}-${spanId}-01`, `00-${traceId}-${'0'.repeat(16)}-01`];
      for (const value of unusable) {
        expect(parseTraceparent(value)).toBeUndefined();
        expect(() => parseRunRequest({ ...base, traceparent: value }, strict)).toThrow(/traceparent/);
      }
    });
  });

  it('rejects a malformed traceId, naming the field', () => {
    for (const value of ['abc', traceId.toUpperCase(), `${traceId}0`, '0'.repeat(32), `${traceId.slice(0, 31)}g`]) {
      expect(ingressErrorOf({ ...base, traceId: value }).message).toContain('traceId:');
    }
  });

  it('rejects a malformed traceparent, naming the field', () => {
    for (const value of ['', 'garbage', `00-${traceId}-${spanId}`, `00-${traceId.toUpperCase()}-${spanId}-01`, `0-${traceId}-${spanId}-01`]) {
      expect(ingressErrorOf({ ...base, traceparent: value }).message).toContain('traceparent:');
    }
  });
});

describe('parseTraceparent', () => {
  it('reads the trace id and the parent span id', () => {
    expect(parseTraceparent(traceparent)).toEqual({ traceId, parentSpanId: spanId });
    expect(parseTraceparent(`00-${traceId}-${spanId}-00`)).toEqual({ traceId, parentSpanId: spanId });
  });

  it('tolerates surrounding whitespace, as in a header value', () => {
    expect(parseTraceparent(`  ${traceparent}\t`)).toEqual({ traceId, parentSpanId: spanId });
  });

  it('accepts a future version other than ff', () => {
    expect(parseTraceparent(`01-${traceId}-${spanId}-01`)).toEqual({ traceId, parentSpanId: spanId });
  });

  it('refuses version ff', () => {
    expect(parseTraceparent(`ff-${traceId}-${spanId}-01`)).toBeUndefined();
  });

  it('refuses an all-zero trace id or span id', () => {
    expect(parseTraceparent(`00-${'0'.repeat(32)}-${spanId}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${traceId}-${'0'.repeat(16)}-01`)).toBeUndefined();
  });

  it('refuses malformed values', () => {
    for (const value of [
      '',
      'garbage',
      `00-${traceId}-${spanId}`,
      `00-${traceId}-${spanId}-01-extra`,
      `00-${traceId.toUpperCase()}-${spanId}-01`,
      `00-${traceId.slice(1)}-${spanId}-01`,
      `00-${traceId}-${spanId.slice(1)}-01`,
      `00_${traceId}_${spanId}_01`,
      `0g-${traceId}-${spanId}-01`,
    ]) {
      expect(parseTraceparent(value), value).toBeUndefined();
    }
  });
});

describe('traceContextFor', () => {
  const otherTraceId = 'a'.repeat(32);
  const fresh = () => 'f'.repeat(32);
  const never = () => {
    throw new Error('a new trace id was not expected');
  };
  const request = (extra: Partial<RunRequest>): RunRequest => ({ ...base, ...extra });

  it('uses the traceId when given, without a parent span', () => {
    expect(traceContextFor(request({ traceId }), never)).toEqual({ traceId });
  });

  it('uses the traceId and keeps the parent span when the traceparent agrees', () => {
    expect(traceContextFor(request({ traceId, traceparent }), never)).toEqual({ traceId, parentSpanId: spanId });
  });

  it('prefers the traceId over a traceparent of another trace, dropping its span', () => {
    const context = traceContextFor(request({ traceId: otherTraceId, traceparent }), never);
    expect(context).toEqual({ traceId: otherTraceId });
  });

  it('continues the traceparent when there is no traceId', () => {
    expect(traceContextFor(request({ traceparent }), never)).toEqual({ traceId, parentSpanId: spanId });
  });

  it('starts a new trace when neither is given', () => {
    let calls = 0;
    const context = traceContextFor(request({}), () => {
      calls++;
      return fresh();
    });
    expect(context).toEqual({ traceId: fresh() });
    expect(calls).toBe(1);
  });

  it('starts a new trace when the traceparent is unusable', () => {
    expect(traceContextFor(request({ traceparent: `ff-${traceId}-${spanId}-01` }), fresh)).toEqual({ traceId: fresh() });
  });

  it('works on what parseRunRequest returns', () => {
    const parsed = parseRunRequest({ ...base, traceparent }, options);
    expect(traceContextFor(parsed, never)).toEqual({ traceId, parentSpanId: spanId });
  });
});
