// In Node 20's V8, an object literal that opens with a spread and then adds keys (`{ ...a, b }`)
// gets a hidden class of its own once the code that builds it is warm: a new map and descriptor
// array per object (~0.35 µs, ~250 bytes) and megamorphic reads wherever it goes. Code that runs
// per run or per call writes such objects another way: a property first (`{ b, ...a }`), or
// `Object.assign({}, a, { b })` where `b` must win. A literal with a getter or a setter
// (`{ get signal() { … } }`) is the same kind of object, and worse: its map keeps the accessor's
// closure, and everything that closure reaches (the call, the run), alive through the next
// young-generation collection (bench/README.md, "What outlives a scavenge"); such an object is a
// class instance instead (`src/lazy-signal.ts`). The command line, run once per process, is exempt.
// (`test/scenarios/shapes.scenario.test.ts` checks the hidden classes of real runs.)
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const exempt = ['src/cli/'];

function sourceFiles(): string[] {
  return ['src', 'machines', 'actors']
    .flatMap((folder) => readdirSync(join(root, folder), { recursive: true, encoding: 'utf8' }).map((file) => `${folder}/${file}`))
    .filter((file) => file.endsWith('.ts') && !exempt.some((prefix) => file.startsWith(prefix)));
}

/** `file:line: text` of every object literal that opens with a spread and has more members after it. */
function spreadFirstLiterals(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isObjectLiteralExpression(node) && node.properties.length > 1 && ts.isSpreadAssignment(node.properties[0]!)) {
      const { line } = source.getLineAndCharacterOfPosition(node.getStart());
      found.push(`${file}:${line + 1}: ${node.getText().replace(/\s+/g, ' ').slice(0, 80)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** `file:line: text` of every object literal with a getter or a setter, but for one made once per store, server or runtime (marked `// long-lived:` on the line before). */
function accessorLiterals(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const lines = text.split('\n');
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isObjectLiteralExpression(node) && node.properties.some((property) => ts.isGetAccessorDeclaration(property) || ts.isSetAccessorDeclaration(property))) {
      const { line } = source.getLineAndCharacterOfPosition(node.getStart());
      if (!lines[line - 1]?.trim().startsWith('// long-lived:')) found.push(`${file}:${line + 1}: ${node.getText().replace(/\s+/g, ' ').slice(0, 80)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('object literals on a run’s path', () => {
  it('finds a literal that opens with a spread and adds keys, and lets the other forms be', () => {
    expect(spreadFirstLiterals('a.ts', 'const a = { ...b, c: 1 };\nconst d = { ...b, ...e };')).toEqual(['a.ts:1: { ...b, c: 1 }', 'a.ts:2: { ...b, ...e }']);
    expect(spreadFirstLiterals('a.ts', 'const a = { c: 1, ...b }; const d = { ...b }; const e = Object.assign({}, b, { c: 1 });')).toEqual([]);
  });

  it('never open with a spread and then add keys', () => {
    const files = sourceFiles();
    expect(files.length).toBeGreaterThan(40);
    expect(files.flatMap((file) => spreadFirstLiterals(relative(root, join(root, file)), readFileSync(join(root, file), 'utf8')))).toEqual([]);
  });

  it('finds a literal with a getter or a setter, and lets classes and descriptors be', () => {
    expect(accessorLiterals('a.ts', 'const a = { x: 1, get y() { return 2; } };\nconst b = { set z(v) {} };')).toEqual([
      'a.ts:1: { x: 1, get y() { return 2; } }',
      'a.ts:2: { set z(v) {} }',
    ]);
    expect(accessorLiterals('a.ts', 'class A { get y() { return 2; } }\nconst d = { get: () => 1, enumerable: true };')).toEqual([]);
    expect(accessorLiterals('a.ts', '// long-lived: one per store\nconst s = { get size() { return 1; } };')).toEqual([]);
  });

  it('never write a getter or a setter in an object literal', () => {
    const files = sourceFiles();
    expect(files.flatMap((file) => accessorLiterals(relative(root, join(root, file)), readFileSync(join(root, file), 'utf8')))).toEqual([]);
  });
});
