/**
 * Address tables: CIDR prefixes flattened into sorted, disjoint intervals, each carrying the combined meaning
 * of every prefix that covers it. A lookup is one binary search over typed arrays (integer compares only), so
 * classifying an address costs the same whether the policy has 20 prefixes or 20,000.
 *
 * Any two CIDR prefixes are either nested or disjoint, so a single sweep with a stack of open prefixes yields
 * the covering set of each elementary interval, innermost last.
 */
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export interface Prefix {
  readonly family: Family;
  /** First and last address, as integers (32 or 128 bits). */
  readonly start: bigint;
  readonly end: bigint;
  readonly len: number;
  /** Normalised text, e.g. `127.0.0.0/8`, `2001:db8::/32`. */
  readonly text: string;
}

/** Error thrown by {@link parsePrefix}; the caller adds where the text came from. */
export class PrefixError extends Error {}

const V4_BITS = 32n;
const V6_BITS = 128n;

function bytesToBigInt(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function bigIntToV6Words(v: bigint): [number, number, number, number] {
  return [Number((v >> 96n) & 0xffffffffn), Number((v >> 64n) & 0xffffffffn), Number((v >> 32n) & 0xffffffffn), Number(v & 0xffffffffn)];
}

/**
 * Parses `a.b.c.d/len` or `ipv6/len` strictly (dotted decimal only, no zone, no host bits set). With
 * `bareIsHost`, an address without `/len` is a single-address prefix.
 */
export function parsePrefix(text: string, bareIsHost = false): Prefix {
  if (typeof text !== 'string') throw new PrefixError('must be a string in CIDR notation');
  const slash = text.indexOf('/');
  if (slash < 0 && !bareIsHost) throw new PrefixError(`"${text}" is not in CIDR notation (address/length)`);
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  if (ipaddr.IPv4.isValidFourPartDecimal(addrText)) {
    addr = ipaddr.IPv4.parse(addrText);
  } else if (addrText.includes(':') && !addrText.includes('%') && ipaddr.IPv6.isValid(addrText)) {
    addr = ipaddr.IPv6.parse(addrText);
  } else {
    throw new PrefixError(`"${addrText}" is not an IPv4 address in dotted-decimal form or an IPv6 address`);
  }
  const family: Family = addr.kind() === 'ipv4' ? 4 : 6;
  const bits = family === 4 ? 32 : 128;
  let len = bits;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > bits) {
      throw new PrefixError(`prefix length "${lenText}" must be an integer in 0..${bits}`);
    }
    len = Number(lenText);
  }
  const value = bytesToBigInt(addr.toByteArray());
  const width = family === 4 ? V4_BITS : V6_BITS;
  const hostBits = width - BigInt(len);
  const hostMask = (1n << hostBits) - 1n;
  if ((value & hostMask) !== 0n) {
    const net = value & ~hostMask;
    throw new PrefixError(`"${text}" has host bits set; the network is ${formatPrefix(family, net, len)}`);
  }
  return { family, start: value, end: value | hostMask, len, text: formatPrefix(family, value, len) };
}

function formatPrefix(family: Family, value: bigint, len: number): string {
  if (family === 4) {
    const n = Number(value);
    return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}/${len}`;
  }
  const parts: number[] = [];
  for (let i = 7; i >= 0; i--) parts.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  return `${new ipaddr.IPv6(parts).toRFC5952String()}/${len}`;
}

/** Does prefix `a` contain prefix `b`? */
export function contains(a: Prefix, b: Prefix): boolean {
  return a.family === b.family && a.start <= b.start && b.end <= a.end;
}

export interface Tagged<T> {
  readonly prefix: Prefix;
  readonly tag: T;
}

/** Sorted interval starts with the cell that applies from each start up to the next. */
export interface Flat<C> {
  starts: bigint[];
  cells: (C | null)[];
}

/**
 * Flattens tagged prefixes of one family into disjoint intervals covering the whole address space. `combine`
 * receives the prefixes covering an interval, outermost first, and returns that interval's cell (null when
 * nothing applies); equal covering sets share one cell.
 */
export function flatten<T, C>(family: Family, items: readonly Tagged<T>[], combine: (covering: readonly Tagged<T>[]) => C | null): Flat<C> {
  const limit = family === 4 ? 1n << V4_BITS : 1n << V6_BITS;
  const sorted = items
    .filter((t) => t.prefix.family === family)
    .map((t, i) => ({ t, i }))
    .sort((a, b) => (a.t.prefix.start < b.t.prefix.start ? -1 : a.t.prefix.start > b.t.prefix.start ? 1 : a.t.prefix.len - b.t.prefix.len || a.i - b.i));
  const bounds = new Set<bigint>([0n]);
  for (const { t } of sorted) {
    bounds.add(t.prefix.start);
    if (t.prefix.end + 1n < limit) bounds.add(t.prefix.end + 1n);
  }
  const points = [...bounds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const stack: { t: Tagged<T>; i: number }[] = [];
  const memo = new Map<string, C | null>();
  const starts: bigint[] = [];
  const cells: (C | null)[] = [];
  let next = 0;
  for (const p of points) {
    while (stack.length > 0 && stack[stack.length - 1]!.t.prefix.end < p) stack.pop();
    while (next < sorted.length && sorted[next]!.t.prefix.start === p) stack.push(sorted[next++]!);
    const key = stack.map((s) => s.i).join(',');
    let cell = memo.get(key);
    if (cell === undefined) {
      cell = stack.length === 0 ? null : combine(stack.map((s) => s.t));
      memo.set(key, cell);
    }
    if (cells.length > 0 && cells[cells.length - 1] === cell) continue;
    starts.push(p);
    cells.push(cell);
  }
  return { starts, cells };
}

/** IPv4 interval table: one binary search over a Uint32Array. */
export class V4Table<C> {
  private readonly starts: Uint32Array;
  private readonly cells: (C | null)[];
  private readonly last: number;

  constructor(flat: Flat<C>) {
    this.starts = Uint32Array.from(flat.starts, (b) => Number(b));
    this.cells = flat.cells;
    this.last = this.starts.length - 1;
  }

  /** Cell for the unsigned 32-bit address `x`. */
  lookup(x: number): C | null {
    const s = this.starts;
    let lo = 0;
    let hi = this.last;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (s[mid]! <= x) lo = mid;
      else hi = mid - 1;
    }
    return this.cells[lo]!;
  }

  get size(): number {
    return this.starts.length;
  }
}

/** IPv6 interval table: starts stored as four 32-bit words each, compared most significant first. */
export class V6Table<C> {
  private readonly words: Uint32Array;
  private readonly cells: (C | null)[];
  private readonly last: number;

  constructor(flat: Flat<C>) {
    this.words = new Uint32Array(flat.starts.length * 4);
    flat.starts.forEach((b, i) => this.words.set(bigIntToV6Words(b), i * 4));
    this.cells = flat.cells;
    this.last = flat.starts.length - 1;
  }

  /** Cell for the address with words w0..w3 (each unsigned 32-bit, w0 most significant). */
  lookup(w0: number, w1: number, w2: number, w3: number): C | null {
    const s = this.words;
    let lo = 0;
    let hi = this.last;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      const o = mid * 4;
      // start[mid] <= address ?
      let le: boolean;
      const a0 = s[o]!;
      if (a0 !== w0) le = a0 < w0;
      else {
        const a1 = s[o + 1]!;
        if (a1 !== w1) le = a1 < w1;
        else {
          const a2 = s[o + 2]!;
          if (a2 !== w2) le = a2 < w2;
          else le = s[o + 3]! <= w3;
        }
      }
      if (le) lo = mid;
      else hi = mid - 1;
    }
    return this.cells[lo]!;
  }

  get size(): number {
    return this.words.length / 4;
  }
}
