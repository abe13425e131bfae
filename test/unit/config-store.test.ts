import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { isRunchartError } from '../../src/errors.js';

const before = process.env.DATABASE_URL;
afterEach(() => {
  if (before === undefined) delete process.env.DATABASE_URL;
  else process.env.DATABASE_URL = before;
});

function refusal(value: unknown): string {
  try {
    parseConfig(value);
  } catch (error) {
    expect(isRunchartError(error) && [error.kind, error.layer]).toEqual(['invalid-input', 'config']);
    return (error as Error).message;
  }
  throw new Error('the config was accepted');
}

describe('config: store kind postgres', () => {
  it('takes the url and schema given, the schema defaulting to runchart', () => {
    delete process.env.DATABASE_URL;
    expect(parseConfig({ store: { kind: 'postgres', url: 'postgres://app@db:5432/agents', schema: 'tenant_runs' } }).store).toMatchObject({ kind: 'postgres', url: 'postgres://app@db:5432/agents', schema: 'tenant_runs' });
    expect(parseConfig({ store: { kind: 'postgres', url: 'postgresql://app@db/agents' } }).store).toMatchObject({ schema: 'runchart' });
  });

  it('takes the url from DATABASE_URL when store.url is omitted, and store.url over it when given', () => {
    process.env.DATABASE_URL = 'postgres://from-env@127.0.0.1:5432/test';
    expect(parseConfig({ store: { kind: 'postgres' } }).store).toMatchObject({ url: 'postgres://from-env@127.0.0.1:5432/test' });
    expect(parseConfig({ store: { kind: 'postgres', url: 'postgres://given@h/d' } }).store).toMatchObject({ url: 'postgres://given@h/d' });
  });

  it('says what is missing when neither store.url nor DATABASE_URL is set, or DATABASE_URL is not a postgres URL', () => {
    delete process.env.DATABASE_URL;
    expect(refusal({ store: { kind: 'postgres' } })).toMatch(/store\.url: kind postgres needs store\.url or the DATABASE_URL environment variable: a postgres:\/\/ URL such as/);
    process.env.DATABASE_URL = 'mysql://x@y/z';
    expect(refusal({ store: { kind: 'postgres' } })).toMatch(/store\.url: DATABASE_URL \(used as store\.url is not set\) is not a postgres:\/\/ URL/);
  });

  it('refuses a url that is not a postgres URL and a schema it would have to quote, naming the field', () => {
    expect(refusal({ store: { kind: 'postgres', url: 'http://db:5432/x' } })).toMatch(/store\.url: a postgres:\/\/ URL such as postgres:\/\/user@127\.0\.0\.1:5432\/runchart/);
    expect(refusal({ store: { kind: 'postgres', url: 'postgres://db/x', schema: 'Runs; DROP' } })).toMatch(/store\.schema: a plain schema name: lower-case letters, digits and _/);
    expect(refusal({ store: { kind: 'postgres', url: 'postgres://db/x', schema: 'x'.repeat(41) } })).toMatch(/store\.schema/);
  });

  it('refuses postgres settings under another kind rather than ignoring them', () => {
    expect(refusal({ store: { url: 'postgres://db/x' } })).toMatch(/store\.url: only read with kind postgres; set store\.kind: postgres or remove store\.url/);
    expect(refusal({ store: { kind: 'memory', schema: 'runs' } })).toMatch(/store\.schema: only read with kind postgres/);
    expect(refusal({ store: { kind: 'mongo' } })).toMatch(/store\.kind/);
  });
});
