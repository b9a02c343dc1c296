export type Family = 4 | 6;

export type Denied = { readonly allowed: false; readonly rule: string; readonly reason: string };
export type Decision = { readonly allowed: true } | Denied;

/**
 * A validated, normalised destination host. `address` is what will be connected to: dotted decimal for IPv4
 * (whatever spelling was given), RFC 5952 text for IPv6. A zone id is kept (`fe80::1%eth0`) only for
 * link-local and link-scoped multicast addresses, which cannot be reached without it; elsewhere it is
 * dropped, as the kernel ignores it. Classification never looks at the zone.
 */
export type Target =
  | { readonly kind: 'ip'; readonly host: string; readonly address: string; readonly family: Family }
  | { readonly kind: 'name'; readonly host: string; readonly name: string };

export interface Policy {
  readonly mode: 'production' | 'development';
  /** Validate + normalise before any I/O. Throws TypeError/RangeError with .code ERR_SOCKGUARD_INVALID_HOST / ERR_SOCKGUARD_INVALID_PORT. */
  parse(host: unknown, port: unknown): Target;
  /** Decision for a name before resolution (`localhost`, `*.localhost` are denied as loopback without DNS); null when it may be resolved. */
  evaluateName(name: string, port: number): Decision | null;
  /**
   * Decision for one concrete address that will be connected to. `name` is the host name sockguard itself
   * resolved to obtain the address (undefined for literals); only then can host exceptions apply. `port` 0
   * means "not known yet" (a bare lookup): port rules are skipped and port-scoped openings do not match.
   * Throws ERR_SOCKGUARD_INVALID_PORT for other ports outside 1..65535.
   */
  evaluate(address: string, family: Family, port: number, name?: string): Decision;
}

/** What `layer.check()` resolves to (docs/api.md#layercheck). */
export type Verdict =
  | { allowed: true; address: string; family: Family; port: number }
  | { allowed: false; rule: string; reason: string; address?: string; port: number };
