/**
 * The import graph of src/ stays acyclic, type-only imports included (scripts/check-imports.mjs). The first test
 * is the gate on the real tree; the others pin down what the checker counts as an import, on small trees it
 * writes to a temporary folder, so the gate cannot pass by missing an edge.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../../scripts/check-imports.mjs', import.meta.url));

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(...args: string[]): Result {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Report {
  graph: Record<string, string[]>;
  cycles: { modules: string[]; cycle: string[] }[];
}

// The graph-shape tests call the script's functions in-process: a child process per case costs the time to
// load TypeScript each time. The exit codes and output formats are tested through the command line below.
const checker = (await import(pathToFileURL(script).href)) as {
  buildGraph(root: string): Map<string, string[]>;
  findCycles(graph: Map<string, string[]>): Report['cycles'];
};

function report(root: string): Report {
  const graph = checker.buildGraph(root);
  return { graph: Object.fromEntries(graph), cycles: checker.findCycles(graph) };
}

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

/** A throwaway source tree: file name (relative, with folders) → contents. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'sockguard-imports-'));
  dirs.push(root);
  for (const [name, text] of Object.entries(files)) {
    const full = path.join(root, name);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, text);
  }
  return root;
}

describe('import graph of src/', () => {
  it('has no cycle', () => {
    const r = run();
    // On failure the message carries the script's own list of cycles.
    expect(r.stderr, r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('check-imports.mjs', () => {
  it('exits 0 on an acyclic tree', () => {
    const root = tree({
      'a.ts': "import { b } from './b.js';\nexport const a = b;\n",
      'b.ts': "import { c } from './sub/c.js';\nexport const b = c;\n",
      'sub/c.ts': 'export const c = 1;\n',
    });
    expect(run('--root', root).status).toBe(0);
  });

  it('exits 1 and names the modules of a value cycle', () => {
    const root = tree({
      'a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
      'b.ts': "import { a } from './a.js';\nexport const b = () => a;\n",
    });
    const r = run('--root', root);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('a.ts -> b.ts -> a.ts');
  });

  it('counts an `import type` as an edge', () => {
    const root = tree({
      'a.ts': "import type { B } from './b.js';\nexport interface A { b: B }\n",
      'b.ts': "import { type A } from './a.js';\nexport interface B { a?: A }\n",
    });
    expect(report(root).cycles.map((c) => c.cycle)).toEqual([['a.ts', 'b.ts', 'a.ts']]);
  });

  it('counts `export … from`, multi-line imports, `import()` types and folder index files', () => {
    const root = tree({
      'a.ts': "export { x } from './b.js';\n",
      'b.ts': "import {\n  y,\n  z,\n} from './c.js';\nexport const x = y + z;\n",
      'c.ts': "export type T = typeof import('./d.js');\nexport const y = 1, z = 2;\n",
      'd.ts': "import { e } from './e/index.js';\nexport const d = e;\n",
      'e/index.ts': 'export const e = 1;\n',
    });
    expect(report(root).graph).toEqual({
      'a.ts': ['b.ts'],
      'b.ts': ['c.ts'],
      'c.ts': ['d.ts'],
      'd.ts': ['e/index.ts'],
      'e/index.ts': [],
    });
  });

  it('ignores package and node: specifiers and text that only looks like an import', () => {
    const root = tree({
      'a.ts': "import net from 'node:net';\nimport ip from 'ipaddr.js';\n// import { b } from './b.js';\nexport const s = \"import './b.js'\";\nexport { net, ip };\n",
      'b.ts': "import { s } from './a.js';\nexport const b = s;\n",
    });
    expect(report(root).graph['a.ts']).toEqual([]);
  });

  it('reports each distinct cycle of a tangle once', () => {
    // hub imports both spokes, both spokes import hub: two cycles, one tangle.
    const root = tree({
      'hub.ts': "import './left.js';\nimport './right.js';\n",
      'left.ts': "import type {} from './hub.js';\n",
      'right.ts': "import type {} from './hub.js';\n",
    });
    const cycles = report(root).cycles.map((c) => c.cycle.join(' -> ')).sort();
    expect(cycles).toEqual(['hub.ts -> left.ts -> hub.ts', 'right.ts -> hub.ts -> right.ts']);
  });

  it('reports a module that imports itself', () => {
    const root = tree({ 'a.ts': "import type {} from './a.js';\n" });
    expect(report(root).cycles.map((c) => c.cycle)).toEqual([['a.ts', 'a.ts']]);
  });

  it('prints graph and cycles as JSON with --json, exiting 1 on a cycle', () => {
    const root = tree({
      'a.ts': "import type {} from './b.js';\n",
      'b.ts': "import type {} from './a.js';\n",
    });
    const r = run('--json', '--root', root);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({
      graph: { 'a.ts': ['b.ts'], 'b.ts': ['a.ts'] },
      cycles: [{ modules: ['a.ts', 'b.ts'], cycle: ['a.ts', 'b.ts', 'a.ts'] }],
    });
  });

  it('prints the graph with --print', () => {
    const root = tree({
      'a.ts': "import './b.js';\n",
      'b.ts': '',
    });
    const r = run('--print', '--root', root);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^a\.ts\s+-> b\.ts$/m);
    expect(r.stdout).toMatch(/^b\.ts\s+-> \(none\)$/m);
  });
});
