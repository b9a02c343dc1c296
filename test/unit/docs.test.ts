/**
 * Documentation references stay true: every Markdown document a source comment or a document names must exist,
 * every `#section` it names must be a heading (or explicit anchor) of that document, and the relative links of
 * README.md and of the other Markdown files resolve.
 *
 * A name is resolved against the repository root, `docs/`, and the folder of the file that names it. In code,
 * only comments count: a string such as the file name a benchmark writes is data, not a citation.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SCANNED = ['src', 'native', 'bench', 'scripts', 'test', 'docs'];
const SKIPPED_DIRS = new Set(['node_modules', 'build', 'dist', 'out', '.bin', '.git']);
const CODE = new Set(['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs', '.c', '.cc', '.cpp', '.h', '.hpp']);
const SHELL = new Set(['.sh', '.py']);

function walk(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) walk(join(dir, entry.name), out);
    } else if (entry.isFile()) {
      out.push(join(dir, entry.name));
    }
  }
  return out;
}

const rel = (file: string): string => relative(ROOT, file).split(sep).join('/');

/** Comment text of a C-family source (`//` and `/* *\/`), skipping string, template and character literals. */
export function cComments(src: string): string {
  let out = '';
  let i = 0;
  const n = src.length;
  while (i < n) {
    const c = src[i]!;
    const d = src[i + 1];
    if (c === '/' && d === '/') {
      const end = src.indexOf('\n', i);
      const stop = end < 0 ? n : end;
      out += src.slice(i + 2, stop) + '\n';
      i = stop;
    } else if (c === '/' && d === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end;
      out += src.slice(i + 2, stop) + '\n';
      i = stop + 2;
    } else if (c === '"' || c === "'" || c === '`') {
      i++;
      while (i < n && src[i] !== c) {
        if (src[i] === '\\') i++;
        else if (src[i] === '\n' && c !== '`') break; // unterminated on this line (a regex literal, an apostrophe)
        i++;
      }
      i++;
    } else {
      i++;
    }
  }
  return out;
}

/** Comment text of a shell or Python file (`#` to end of line, shebang included; harmless). */
function hashComments(src: string): string {
  return src
    .split('\n')
    .map((line) => {
      const at = line.search(/(^|\s)#/);
      return at < 0 ? '' : line.slice(at);
    })
    .join('\n');
}

/** Markdown outside fenced code blocks. */
function prose(md: string): string {
  let fenced = false;
  return md
    .split('\n')
    .filter((line) => {
      if (/^\s*(```|~~~)/.test(line)) {
        fenced = !fenced;
        return false;
      }
      return !fenced;
    })
    .join('\n');
}

/** GitHub's heading anchors (with -1, -2 for repeats) and explicit `<a id>`/`<a name>` anchors of a document. */
export function anchorsOf(md: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of prose(md).split('\n')) {
    const h = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (h) {
      const text = h[1]!
        .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
        .replace(/<[^>]+>/g, '')
        .toLowerCase();
      const base = text.replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
      const count = seen.get(base) ?? 0;
      seen.set(base, count + 1);
      anchors.add(count === 0 ? base : `${base}-${count}`);
    }
    for (const a of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(a[1]!);
  }
  return anchors;
}

interface Reference {
  file: string;
  line: number;
  target: string;
  anchor?: string;
}

// A Markdown document named in text: optional ./ or ../ and folders, then NAME.md, then an optional #anchor.
const MD_NAME = /(?<![\w./-])((?:\.{1,2}\/)*(?:[\w-][\w.-]*\/)*[\w-][\w.-]*\.md)\b(?:#([\w-]+))?/g;
const URL = /\b[a-z][a-z0-9+.-]*:\/\/\S+/gi;

function citationsIn(file: string, text: string): Reference[] {
  const refs: Reference[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(URL, ' ');
    for (const m of line.matchAll(MD_NAME)) refs.push({ file, line: index + 1, target: m[1]!, anchor: m[2] });
  });
  return refs;
}

/** Text of `file` that can cite documents, with line structure kept where it matters for messages. */
function citingText(file: string): string | undefined {
  const ext = extname(file);
  const src = readFileSync(file, 'utf8');
  if (ext === '.md') return prose(src);
  if (CODE.has(ext)) return cComments(src);
  if (SHELL.has(ext)) return hashComments(src);
  return undefined;
}

/** The existing file a reference names, tried against the root, docs/ and the citing file's folder. */
function resolveCitation(ref: Reference): string | undefined {
  for (const base of [ROOT, join(ROOT, 'docs'), dirname(ref.file)]) {
    const candidate = resolve(base, ref.target);
    if (candidate.startsWith(ROOT + sep) && existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return undefined;
}

const anchorCache = new Map<string, Set<string>>();
function hasAnchor(doc: string, anchor: string): boolean {
  let anchors = anchorCache.get(doc);
  if (anchors === undefined) {
    anchors = anchorsOf(readFileSync(doc, 'utf8'));
    anchorCache.set(doc, anchors);
  }
  return anchors.has(anchor);
}

/** Relative links `[text](target)` and `![alt](target)` of a Markdown file, outside code. */
function linksOf(file: string): Reference[] {
  const refs: Reference[] = [];
  prose(readFileSync(file, 'utf8'))
    .split('\n')
    .forEach((raw, index) => {
      const line = raw.replace(/`[^`]*`/g, '');
      for (const m of line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        const href = m[1]!;
        if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // https:, mailto:
        const hash = href.indexOf('#');
        const target = hash < 0 ? href : href.slice(0, hash);
        const anchor = hash < 0 ? undefined : href.slice(hash + 1);
        refs.push({ file, line: index + 1, target: decodeURIComponent(target), anchor });
      }
    });
  return refs;
}

function describeRef(ref: Reference): string {
  return `${rel(ref.file)}:${ref.line}: ${ref.target}${ref.anchor ? `#${ref.anchor}` : ''}`;
}

const files = SCANNED.flatMap((d) => walk(join(ROOT, d)));
const markdown = [join(ROOT, 'README.md'), ...files.filter((f) => extname(f) === '.md')];

describe('documentation references', () => {
  it('finds the files to check', () => {
    expect(files.some((f) => rel(f) === 'src/layer.ts')).toBe(true);
    expect(markdown.length).toBeGreaterThan(4);
  });

  it('every Markdown document cited in src/, native/, bench/, scripts/, test/ and docs/ exists, with its section', () => {
    const missing: string[] = [];
    let checked = 0;
    for (const file of files) {
      const text = citingText(file);
      if (text === undefined) continue;
      for (const ref of citationsIn(file, text)) {
        checked++;
        const doc = resolveCitation(ref);
        if (doc === undefined) missing.push(`${describeRef(ref)} (no such document)`);
        else if (ref.anchor !== undefined && !hasAnchor(doc, ref.anchor)) {
          missing.push(`${describeRef(ref)} (no section "#${ref.anchor}" in ${rel(doc)})`);
        }
      }
    }
    expect(missing).toEqual([]);
    expect(checked).toBeGreaterThan(20);
  });

  it("README.md's and the other documents' relative links resolve", () => {
    const broken: string[] = [];
    for (const file of markdown) {
      for (const ref of linksOf(file)) {
        const doc = ref.target === '' ? file : resolve(dirname(file), ref.target);
        if (!doc.startsWith(ROOT) || !existsSync(doc)) broken.push(`${describeRef(ref)} (no such file)`);
        else if (ref.anchor !== undefined && extname(doc) === '.md' && !hasAnchor(doc, ref.anchor)) {
          broken.push(`${describeRef(ref)} (no section "#${ref.anchor}" in ${rel(doc)})`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('README.md links the four documents under docs/', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    for (const doc of ['service', 'policy', 'api', 'performance']) {
      expect(readme).toContain(`](docs/${doc}.md)`);
      expect(existsSync(join(ROOT, 'docs', `${doc}.md`))).toBe(true);
    }
  });

  it('the checker itself: comments only, headings become GitHub anchors, a missing document is reported', () => {
    const comments = cComments("const a = 'latest.md'; // see docs/api.md#exports\n/* x.md */ const re = /'/;\n");
    expect(citationsIn('x.ts', comments).map((r) => `${r.target}#${r.anchor ?? ''}`)).toEqual(['docs/api.md#exports', 'x.md#']);
    const anchors = anchorsOf("# Title\n## Google's range list\n### `layer.check()`\n## Rules\n## Rules\n```sh\n# not a heading\n```\n");
    expect([...anchors]).toEqual(['title', 'googles-range-list', 'layercheck', 'rules', 'rules-1']);
    expect(resolveCitation({ file: join(ROOT, 'src', 'layer.ts'), line: 1, target: 'NO-SUCH-DOCUMENT.md' })).toBeUndefined();
    expect(resolveCitation({ file: join(ROOT, 'bench', 'README.md'), line: 1, target: 'results/latest.md' })).toBeDefined();
  });
});
