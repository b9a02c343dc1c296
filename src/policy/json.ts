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
 * parent, key and offset, and the paths and their map are built on the first lookup: building a path string
 * and a map entry per value as it parsed made the parser eight times slower on a file with a long array (e.g.
 * 70,000 numbers).
 */
export class Positions {
  private map: Map<string, number> | undefined;
  /** Per value, in parse order: index of the enclosing value (-1 for the root), its key, its offset. */
  readonly parents: number[] = [];
  readonly keys: (string | number)[] = [];
  readonly offsets: number[] = [];

  private index(): Map<string, number> {
    if (this.map === undefined) {
      this.map = new Map();
      const paths: string[] = [];
      for (let k = 0; k < this.offsets.length; k++) {
        const parent = this.parents[k]!;
        const path = parent < 0 ? '$' : childPath(paths[parent]!, this.keys[k]!);
        paths.push(path);
        this.map.set(path, this.offsets[k]!);
      }
    }
    return this.map;
  }
  has(path: string): boolean {
    return this.index().has(path);
  }
  get(path: string): number | undefined {
    return this.index().get(path);
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
