#!/usr/bin/env node
// Keeps the import graph of src/ acyclic, type-only imports included: a type import still couples two modules'
// designs, and a cycle through one is how a value cycle starts. Reads every src/**/*.ts with TypeScript's own
// parser (so multi-line imports, `import type`, `export … from`, `import x = require()`, `import()` and
// `typeof import()` are all seen), resolves relative specifiers to files in src/, and looks for cycles.
//
//   node scripts/check-imports.mjs            exit 0 when acyclic; else print each cycle and exit 1
//   node scripts/check-imports.mjs --print    also print the graph, one "module -> imports" line per module
//   node scripts/check-imports.mjs --json     print { graph, cycles } as JSON (exit code as above)
//   node scripts/check-imports.mjs --root DIR check DIR instead of src/ (used by the tests on fixture trees)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const opts = { print: false, json: false, root: path.join(repo, 'src') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--print') opts.print = true;
    else if (a === '--json') opts.json = true;
    else if (a === '--root') opts.root = path.resolve(argv[++i] ?? '');
    else if (a === '--help' || a === '-h') {
      console.log('usage: check-imports.mjs [--print] [--json] [--root DIR]');
      process.exit(0);
    } else {
      console.error(`check-imports: unknown argument ${a}`);
      process.exit(2);
    }
  }
  return opts;
}

function listTs(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...listTs(full));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

/** Every module specifier a file names, with whether the reference is type-only. */
export function specifiersOf(fileName, text) {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found = [];
  const visit = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      if (node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const e = node.moduleReference.expression;
      if (ts.isStringLiteral(e)) found.push(e.text);
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      if (ts.isLiteralTypeNode(arg) && ts.isStringLiteral(arg.literal)) found.push(arg.literal.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [a] = node.arguments;
      if (a && ts.isStringLiteralLike(a)) found.push(a.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** A relative specifier as the file in root it names (NodeNext style: './x.js' is './x.ts'), or null. */
function resolveSpecifier(fromFile, spec, files) {
  if (!spec.startsWith('./') && !spec.startsWith('../')) return null;
  const base = path.resolve(path.dirname(fromFile), spec);
  const candidates = [base, base.replace(/\.(m|c)?js$/, '.$1ts'), `${base}.ts`, path.join(base, 'index.ts')];
  for (const c of candidates) if (files.has(c)) return c;
  return null;
}

export function buildGraph(root) {
  const files = listTs(root);
  const set = new Set(files);
  // Labels as a reader would write them from the repository root (src/layer.ts); a root outside it (a test's
  // fixture tree) is labelled relative to itself.
  const inRepo = !path.relative(repo, root).startsWith('..');
  const rel = (f) => path.relative(inRepo ? repo : root, f).split(path.sep).join('/');
  const graph = new Map();
  for (const f of files) {
    const deps = new Set();
    for (const spec of specifiersOf(f, readFileSync(f, 'utf8'))) {
      const target = resolveSpecifier(f, spec, set);
      if (target) deps.add(rel(target));
    }
    graph.set(rel(f), [...deps].sort());
  }
  return graph;
}

/**
 * Cycles of the graph: for each strongly connected component that has one (more than one module, or a module
 * that imports itself), the shortest cycle through its first module, so each tangle is reported once, readably.
 */
export function findCycles(graph) {
  // Tarjan's algorithm, iterative so a deep graph cannot overflow the stack.
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const onStack = new Set();
  const stack = [];
  const sccs = [];
  for (const start of graph.keys()) {
    if (idx.has(start)) continue;
    const work = [[start, 0]];
    idx.set(start, index); low.set(start, index); index++;
    stack.push(start); onStack.add(start);
    while (work.length) {
      const frame = work[work.length - 1];
      const [v, i] = frame;
      const deps = graph.get(v) ?? [];
      if (i < deps.length) {
        frame[1]++;
        const w = deps[i];
        if (!idx.has(w)) {
          idx.set(w, index); low.set(w, index); index++;
          stack.push(w); onStack.add(w);
          work.push([w, 0]);
        } else if (onStack.has(w)) {
          low.set(v, Math.min(low.get(v), idx.get(w)));
        }
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent), low.get(v)));
      }
      if (low.get(v) === idx.get(v)) {
        const scc = [];
        let w;
        do { w = stack.pop(); onStack.delete(w); scc.push(w); } while (w !== v);
        sccs.push(scc.sort());
      }
    }
  }
  const cycles = [];
  const seen = new Set();
  for (const scc of sccs) {
    const members = new Set(scc);
    if (scc.length === 1 && !(graph.get(scc[0]) ?? []).includes(scc[0])) continue;
    // The shortest cycle through each module of the tangle, each distinct cycle once: every import that closes
    // a loop shows up, without enumerating the (exponentially many) simple cycles of a big tangle.
    for (const head of scc) {
      const cycle = shortestCycle(graph, members, head);
      const key = canonical(cycle);
      if (seen.has(key)) continue;
      seen.add(key);
      cycles.push({ modules: scc, cycle });
    }
  }
  return cycles;
}

/** Breadth-first from head back to head inside the component; returns [head, …, head]. */
function shortestCycle(graph, members, head) {
  const prev = new Map([[head, null]]);
  const queue = [head];
  let last = null;
  while (queue.length && last === null) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === head) { last = v; break; }
      if (!prev.has(w)) { prev.set(w, v); queue.push(w); }
    }
  }
  const cycle = [head];
  for (let v = last; v !== head; v = prev.get(v)) cycle.unshift(v);
  cycle.unshift(head);
  return cycle;
}

/** The same cycle entered at a different module is the same cycle: rotate to the smallest module first. */
function canonical(cycle) {
  const ring = cycle.slice(0, -1);
  let best = 0;
  for (let i = 1; i < ring.length; i++) if (ring[i] < ring[best]) best = i;
  return [...ring.slice(best), ...ring.slice(0, best)].join('\0');
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const graph = buildGraph(opts.root);
  const cycles = findCycles(graph);
  if (opts.json) {
    console.log(JSON.stringify({ graph: Object.fromEntries(graph), cycles }, null, 2));
    process.exit(cycles.length ? 1 : 0);
  }
  if (opts.print) {
    const width = Math.max(...[...graph.keys()].map((k) => k.length));
    for (const [m, deps] of graph) console.log(`${m.padEnd(width)} -> ${deps.length ? deps.join(', ') : '(none)'}`);
    console.log('');
  }
  if (cycles.length === 0) {
    console.log(`import graph of ${graph.size} modules is acyclic`);
    process.exit(0);
  }
  console.error(`import cycles found (${cycles.length}); each line is one cycle, first module repeated at the end:`);
  for (const c of cycles) {
    console.error(`  ${c.cycle.join(' -> ')}`);
  }
  process.exit(1);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
