/**
 * Host and address literals, parsed the way the operating system will read them.
 *
 * The policy is only as good as its agreement with `getaddrinfo`: a spelling the resolver turns into an address
 * must be classified as that address, and a spelling it rejects must be rejected here before any I/O. So the
 * IPv4 parser reproduces glibc's `inet_aton` exactly (1–4 parts, each decimal, `0`-octal or `0x`-hex, the last
 * part filling the remaining bytes), and the IPv6 parser reproduces `inet_pton6` (at most 4 hex digits a group,
 * one `::`, a dotted tail in plain decimal without leading zeros), with an optional zone id after `%`.
 *
 * Parsers write into module-level scratch slots instead of returning objects, so classifying an address on the
 * hot path allocates nothing.
 */

/** Result slots of the last successful parse (valid only until the next call). */
export const out = {
  /** IPv4 address as an unsigned 32-bit integer. */
  v4: 0,
  /** IPv6 address as four unsigned 32-bit words, most significant first. */
  w0: 0,
  w1: 0,
  w2: 0,
  w3: 0,
  /** Offsets of the zone id (after `%`) in the parsed string; `zoneStart < 0` when there is none. */
  zoneStart: -1,
  zoneEnd: -1,
  /** True when the IPv4 input was already in canonical dotted-decimal form. */
  canonical: false,
};

const groups = new Uint16Array(8);

/**
 * glibc `inet_aton` (as used by `getaddrinfo` through `__inet_aton_exact`) on `s[start, end)`.
 * Returns the address, or -1 when the OS would not read the string as an IPv4 address.
 */
export function parseInetAton(s: string, start: number, end: number): number {
  let parts = 0;
  let acc = 0; // bytes of the completed parts, packed from the top
  let i = start;
  let canonical = true;
  if (i >= end) return -1;
  for (;;) {
    let c = s.charCodeAt(i);
    if (c < 48 || c > 57) return -1; // every part starts with an ASCII digit
    let val = 0;
    const partStart = i;
    if (c === 48 && i + 1 < end && (s.charCodeAt(i + 1) | 0x20) === 120) {
      // 0x / 0X: hex. strtoul accepts "0x" with no digits as the number 0 followed by "x", which inet_aton
      // then rejects as a trailing character, so at least one hex digit is required.
      i += 2;
      const digitsStart = i;
      while (i < end) {
        c = s.charCodeAt(i);
        let d: number;
        if (c >= 48 && c <= 57) d = c - 48;
        else if ((c | 0x20) >= 97 && (c | 0x20) <= 102) d = (c | 0x20) - 87;
        else break;
        val = val * 16 + d;
        if (val > 0xffffffff) return -1;
        i++;
      }
      if (i === digitsStart) return -1;
      canonical = false;
    } else if (c === 48) {
      // Octal (a lone "0" is octal zero too). An 8 or 9 stops strtoul and is then a trailing character.
      i++;
      while (i < end) {
        c = s.charCodeAt(i);
        if (c < 48 || c > 55) break;
        val = val * 8 + (c - 48);
        if (val > 0xffffffff) return -1;
        i++;
      }
      if (i - partStart > 1) canonical = false;
    } else {
      while (i < end) {
        c = s.charCodeAt(i);
        if (c < 48 || c > 57) break;
        val = val * 10 + (c - 48);
        if (val > 0xffffffff) return -1;
        i++;
      }
    }
    if (i < end && s.charCodeAt(i) === 46) {
      if (parts > 2 || val > 0xff) return -1;
      acc = acc | (val << (24 - 8 * parts));
      parts++;
      i++;
      if (i >= end) return -1; // empty part after a dot
      continue;
    }
    if (i !== end) return -1;
    // The last part fills all remaining bytes: a.b.c.d, a.b.c (16 bits), a.b (24 bits), a (32 bits).
    const max = parts === 0 ? 0xffffffff : parts === 1 ? 0xffffff : parts === 2 ? 0xffff : 0xff;
    if (val > max) return -1;
    out.canonical = canonical && parts === 3;
    return (acc | val) >>> 0;
  }
}

/** Strict dotted quad as `inet_pton4` reads it (IPv6 tails): 4 decimal parts, no leading zeros. */
function parseDottedTail(s: string, start: number, end: number): number {
  let parts = 0;
  let val = 0;
  let digits = 0;
  let acc = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits > 0 && val === 0) return -1;
      val = val * 10 + (c - 48);
      if (val > 255) return -1;
      digits++;
    } else if (c === 46 && digits > 0 && parts < 3) {
      acc = acc * 256 + val;
      parts++;
      val = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  if (parts !== 3 || digits === 0) return -1;
  return acc * 256 + val;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

/** glibc `inet_pton6` on `s[start, end)` (no zone, no brackets). Fills out.w0..w3; false when invalid. */
export function parseIPv6(s: string, start: number, end: number): boolean {
  groups.fill(0);
  let i = start;
  if (i >= end) return false;
  if (s.charCodeAt(i) === 58) {
    i++;
    if (i >= end || s.charCodeAt(i) !== 58) return false;
  }
  let tp = 0; // groups written
  let colonp = -1;
  let digits = 0;
  let val = 0;
  let curtok = i;
  while (i < end) {
    const c = s.charCodeAt(i++);
    const d = hexValue(c);
    if (d >= 0) {
      if (digits === 4) return false;
      val = (val << 4) | d;
      digits++;
      continue;
    }
    if (c === 58) {
      curtok = i;
      if (digits === 0) {
        if (colonp >= 0) return false;
        colonp = tp;
        continue;
      }
      if (i === end) return false;
      if (tp >= 8) return false;
      groups[tp++] = val;
      digits = 0;
      val = 0;
      continue;
    }
    if (c === 46 && tp <= 6) {
      const v4 = parseDottedTail(s, curtok, end);
      if (v4 < 0) return false;
      groups[tp++] = v4 >>> 16;
      groups[tp++] = v4 & 0xffff;
      digits = 0;
      i = end;
      break;
    }
    return false;
  }
  if (digits > 0) {
    if (tp >= 8) return false;
    groups[tp++] = val;
  }
  if (colonp >= 0) {
    if (tp === 8) return false; // "::" must stand for at least one group
    const n = tp - colonp;
    for (let k = 0; k < n; k++) groups[7 - k] = groups[tp - 1 - k]!;
    for (let k = colonp; k < 8 - n; k++) groups[k] = 0;
    tp = 8;
  }
  if (tp !== 8) return false;
  out.w0 = ((groups[0]! << 16) | groups[1]!) >>> 0;
  out.w1 = ((groups[2]! << 16) | groups[3]!) >>> 0;
  out.w2 = ((groups[4]! << 16) | groups[5]!) >>> 0;
  out.w3 = ((groups[6]! << 16) | groups[7]!) >>> 0;
  return true;
}

/**
 * Characters accepted in a zone id. Linux interface names may contain almost anything except `/`, `:` and
 * white space (`eth0.100`, `en-0`, `wg_1`); numeric zone indices are plain digits. Classification ignores the
 * zone, so accepting generously cannot open anything, while rejecting `-` or `.` would turn a valid literal
 * into an error (or, in filters that then fall back to name handling, into a bypass).
 */
function isZoneChar(c: number): boolean {
  return c > 32 && c < 127 && c !== 47 && c !== 58 && c !== 37 && c !== 91 && c !== 93;
}

const MAX_ZONE = 64;

/**
 * IPv6 literal with optional zone (`fe80::1%eth0`), optionally in one pair of brackets. Fills `out`; returns
 * false when invalid.
 */
export function parseIPv6Host(s: string): boolean {
  let start = 0;
  let end = s.length;
  if (s.charCodeAt(0) === 91) {
    if (s.charCodeAt(end - 1) !== 93) return false;
    start = 1;
    end--;
  }
  const pct = s.indexOf('%', start);
  out.zoneStart = -1;
  out.zoneEnd = -1;
  if (pct >= 0 && pct < end) {
    const zs = pct + 1;
    if (zs >= end || end - zs > MAX_ZONE) return false;
    for (let i = zs; i < end; i++) if (!isZoneChar(s.charCodeAt(i))) return false;
    out.zoneStart = zs;
    out.zoneEnd = end;
    end = pct;
  }
  return parseIPv6(s, start, end);
}

/** Dotted-decimal form of an unsigned 32-bit address. */
export function formatV4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

/**
 * RFC 5952 text of the address in out.w0..w3: lowercase, leading zeros dropped, the longest run of two or more
 * zero groups (the first on a tie) as `::`, and IPv4-mapped addresses with a dotted tail.
 */
export function formatV6(w0: number, w1: number, w2: number, w3: number): string {
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) return `::ffff:${formatV4(w3)}`;
  const g = fmtGroups;
  g[0] = w0 >>> 16;
  g[1] = w0 & 0xffff;
  g[2] = w1 >>> 16;
  g[3] = w1 & 0xffff;
  g[4] = w2 >>> 16;
  g[5] = w2 & 0xffff;
  g[6] = w3 >>> 16;
  g[7] = w3 & 0xffff;
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  let text = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      text += '::';
      i += bestLen - 1;
      continue;
    }
    if (text.length > 0 && i !== bestStart + bestLen) text += ':';
    text += g[i]!.toString(16);
  }
  return text;
}

const fmtGroups = new Uint16Array(8);

/** Does the address in these words need its zone to be connected to (link-local unicast, link-scoped multicast)? */
export function needsZone(w0: number): boolean {
  const top = w0 >>> 16;
  if ((top & 0xffc0) === 0xfe80) return true;
  // ff01::/16 interface-local and ff02::/16 link-local multicast (the scope is the low nibble of the 2nd byte).
  return (top & 0xff00) === 0xff00 && ((top & 0x000f) === 1 || (top & 0x000f) === 2);
}

/** Is the label `s[start, end)` numeric in the WHATWG sense (all ASCII digits, or 0x followed by hex digits)? */
function isNumericLabel(s: string, start: number, end: number): boolean {
  if (start >= end) return false;
  if (end - start >= 2 && s.charCodeAt(start) === 48 && (s.charCodeAt(start + 1) | 0x20) === 120) {
    for (let i = start + 2; i < end; i++) if (hexValue(s.charCodeAt(i)) < 0) return false;
    return true;
  }
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * Whether `s[0, end)` ends in a numeric label. Such a host can only be an IPv4 literal: resolvers read it as
 * one, and treating a malformed one (`256.1.1.1`, `1.2.3.4.5`, `0189`) as a host name would send it to DNS.
 */
export function endsInNumber(s: string, end: number): boolean {
  const dot = s.lastIndexOf('.', end - 1);
  return isNumericLabel(s, dot + 1, end);
}

/**
 * LDH host name check on `s[0, end)`: labels of 1–63 ASCII letters, digits, `-` and `_` (underscores appear in
 * real service names), not starting or ending with `-`, at most 253 characters. Internationalised names must
 * be given in their ASCII (punycode) form.
 */
export function isHostName(s: string, end: number): boolean {
  if (end === 0 || end > 253) return false;
  let labelStart = 0;
  for (let i = 0; i <= end; i++) {
    const c = i === end ? 46 : s.charCodeAt(i);
    if (c === 46) {
      const len = i - labelStart;
      if (len === 0 || len > 63) return false;
      if (s.charCodeAt(labelStart) === 45 || s.charCodeAt(i - 1) === 45) return false;
      labelStart = i + 1;
      continue;
    }
    const l = c | 0x20;
    if ((l >= 97 && l <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95) continue;
    return false;
  }
  return true;
}

/** Normalised host name: one trailing dot stripped, lower case. Returns null when `s` is not a valid name. */
export function normaliseName(s: string): string | null {
  let end = s.length;
  if (end > 1 && s.charCodeAt(end - 1) === 46) end--;
  if (!isHostName(s, end) || endsInNumber(s, end)) return null;
  const name = end === s.length ? s : s.slice(0, end);
  return name.toLowerCase();
}

/**
 * Parses a concrete address (what will be connected to): any IPv4 spelling `inet_aton` accepts, or an IPv6
 * literal with optional zone/brackets. Returns 4 or 6 (result in `out`), or 0 when it is not an address.
 */
export function parseAddress(s: string): 0 | 4 | 6 {
  const len = s.length;
  if (len === 0 || len > 128) return 0;
  // Fast path: plain dotted decimal, the form every resolver returns.
  let acc = 0;
  let val = 0;
  let digits = 0;
  let parts = 0;
  let i = 0;
  for (; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits > 0 && val === 0) break; // leading zero: octal, take the slow path
      val = val * 10 + (c - 48);
      if (val > 255 || ++digits > 3) break;
    } else if (c === 46 && digits > 0 && parts < 3) {
      acc = acc * 256 + val;
      parts++;
      val = 0;
      digits = 0;
    } else {
      break;
    }
  }
  if (i === len && parts === 3 && digits > 0) {
    out.v4 = acc * 256 + val;
    out.canonical = true;
    return 4;
  }
  for (let k = 0; k < len; k++) {
    const c = s.charCodeAt(k);
    if (c === 58 || c === 91) return parseIPv6Host(s) ? 6 : 0;
  }
  const v4 = parseInetAton(s, 0, len);
  if (v4 < 0) return 0;
  out.v4 = v4;
  return 4;
}
