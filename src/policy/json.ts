/**
 * A strict JSON parser (RFC 8259) that remembers where every value starts, so a policy file can be rejected
 * with the line and column of the fault, not only its JSON path. Node's `JSON.parse` reports neither line nor
 * column on Node 20. Duplicate keys are rejected: in a security policy the "last one wins" rule silently hides
 * an entry.
 */

export interface Located {
  value: unknown;
  /** Offset of each value, by JSON path (`$`, `$.allow[0].cidr`). */
  positions: Positions;
}

/**
 * Offsets of values by JSON path. Only an error message looks one up, so the parser records each value's
 * parent, key and offset, and a lookup walks down from the root, building only the paths of the children it
 * passes. Building a path string and a map entry for every value as it parsed (or all of them at the first
 * lookup) made loading a file with a long array (e.g. 70,000 numbers) several times slower.
 */
export class Positions {
  /** Per value, in parse order (the root first): index of the enclosing value (-1 for the root), key, offset. */
  readonly parents: number[] = [];
  readonly keys: (string | number)[] = [];
  readonly offsets: number[] = [];
  private firstChild: Int32Array | undefined;
  private nextSibling: Int32Array | undefined;

  /** Index of the value at `path`, or -1. */
  private find(path: string): number {
    const n = this.offsets.length;
    if (n === 0) return -1;
    if (this.firstChild === undefined || this.nextSibling === undefined) {
      // Children in parse order, as first-child / next-sibling links.
      const first = new Int32Array(n).fill(-1);
      const next = new Int32Array(n).fill(-1);
      for (let k = n - 1; k > 0; k--) {
        const parent = this.parents[k]!;
        next[k] = first[parent]!;
        first[parent] = k;
      }
      this.firstChild = first;
      this.nextSibling = next;
    }
    // Invariant: `at` (the path of value `cur`) is a prefix of `path`.
    let cur = 0;
    let at = '$';
    if (!path.startsWith(at)) return -1;
    for (;;) {
      if (at.length === path.length) return cur;
      let found = -1;
      for (let c = this.firstChild[cur]!; c >= 0; c = this.nextSibling[c]!) {
        const p = childPath(at, this.keys[c]!);
        if (path.startsWith(p) && (path.length === p.length || path[p.length] === '.' || path[p.length] === '[')) {
          found = c;
          at = p;
          break;
        }
      }
      if (found < 0) return -1;
      cur = found;
    }
  }
  has(path: string): boolean {
    return this.find(path) >= 0;
  }
  get(path: string): number | undefined {
    const k = this.find(path);
    return k < 0 ? undefined : this.offsets[k];
  }
}

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

/** 1-based line and column of `offset` in `text`. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/** `$.a.b[0]` style path of a child key. */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

/**
 * Deepest nesting of arrays and objects accepted. A policy document needs five levels; the parser recurses
 * once per level, so without a bound a file of a few hundred thousand brackets overflows the stack.
 */
export const MAX_DEPTH = 64;

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** Parses `text`; throws {@link JsonSyntaxError} with the offset of the first fault. */
export function parseJson(text: string): Located {
  const positions = new Positions();
  const { parents, keys, offsets } = positions;
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;

  const fail = (message: string, at = i): never => {
    throw new JsonSyntaxError(message, at);
  };
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };
  const unexpected = (expected: string): never =>
    i >= n ? fail(`unexpected end of input (expected ${expected})`) : fail(`unexpected character ${JSON.stringify(text[i])} (expected ${expected})`);

  const string = (): string => {
    i++; // opening quote
    let s = '';
    let runStart = i;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 34) {
        s += text.slice(runStart, i);
        i++;
        return s;
      }
      if (c < 0x20) fail('control character in string (escape it)');
      if (c === 92) {
        s += text.slice(runStart, i);
        const e = text[i + 1];
        const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e !== undefined && e in simple) {
          s += simple[e];
          i += 2;
        } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          s += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else {
          fail('invalid escape sequence in string');
        }
        runStart = i;
        continue;
      }
      i++;
    }
    return fail('unterminated string');
  };

  const value = (parent: number, key: string | number, depth: number): unknown => {
    ws();
    const self = offsets.length;
    parents.push(parent);
    keys.push(key);
    offsets.push(i);
    const c = text[i];
    if ((c === '{' || c === '[') && depth >= MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') unexpected('a string key');
        const keyAt = i;
        const key = string();
        if (seen.has(key)) fail(`duplicate key ${JSON.stringify(key)}`, keyAt);
        seen.add(key);
        ws();
        if (text[i] !== ':') unexpected("':'");
        i++;
        const v = value(self, key, depth + 1);
        // defineProperty, so a "__proto__" key stays an ordinary property.
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        unexpected("',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(self, arr.length, depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        unexpected("',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m !== null && m[0].length > 0 && m[0] !== '-') {
      i += m[0].length;
      return Number(m[0]);
    }
    return unexpected('a value');
  };

  const result = value(-1, '$', 0);
  ws();
  if (i < n) fail(`unexpected ${JSON.stringify(text[i])} after the end of the JSON value`);
  return { value: result, positions };
}
