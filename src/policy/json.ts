/**
 * A strict JSON parser (RFC 8259) that remembers where every value starts, so a policy file can be rejected
 * with the line and column of the fault, not only its JSON path. Node's `JSON.parse` reports neither line nor
 * column on Node 20. Duplicate keys are rejected: in a security policy the "last one wins" rule silently hides
 * an entry.
 */

export interface Located {
  value: unknown;
  /** Offset of each value, by JSON path (`$`, `$.allow[0].cidr`). */
  positions: Map<string, number>;
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
  const positions = new Map<string, number>();
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

  const value = (path: string, depth: number): unknown => {
    ws();
    positions.set(path, i);
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
        const v = value(childPath(path, key), depth + 1);
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
        arr.push(value(childPath(path, arr.length), depth + 1));
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
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m !== null && m[0].length > 0 && m[0] !== '-') {
      i += m[0].length;
      return Number(m[0]);
    }
    return unexpected('a value');
  };

  const result = value('$', 0);
  ws();
  if (i < n) fail(`unexpected ${JSON.stringify(text[i])} after the end of the JSON value`);
  return { value: result, positions };
}
