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
export type Verdict = (
  | { allowed: true; address: string; family: Family; port: number }
  | { allowed: false; rule: string; reason: string; address?: string; port: number }
) & {
  /** In development mode: what production would decide for the same addresses. */
  production?: ProductionVerdict;
};

/** Production's decision, reported beside a development-mode verdict. */
export type ProductionVerdict = { allowed: true } | { allowed: false; rule: string; reason: string };

/** A policy document, schema version 1 (src/policy/README.md#policy-files-schema-version-1), as an object. */
export interface PolicyObject {
  $schema?: string;
  comment?: string;
  /** The schema version: 1. */
  version: number;
  /** @default 'production' */
  mode?: 'production' | 'development';
  /** Sections whose built-in defaults are dropped. */
  replace?: Array<'deniedPorts' | 'providers' | 'exceptions'>;
  allow?: Array<string | { cidr: string; ports?: number[]; openSpecialPurpose?: boolean; comment?: string }>;
  deny?: Array<string | { cidr: string; rule?: string; reason?: string; comment?: string }>;
  deniedPorts?: number[];
  providers?: Array<
    | { name: string; file: string; comment?: string }
    | { name: string; prefixes: string[]; comment?: string }
    | { name: string; builtin: 'google'; comment?: string }
  >;
  exceptions?: Array<{ address: string; ports: number[]; comment?: string } | { host: string; ports: number[]; comment?: string }>;
}

/**
 * What the `policy` option takes: a built-in name, a policy document, a policy already built, or a path to a
 * policy file (a path contains `/` or ends in `.json`, so a misspelt name is not taken for a file).
 */
export type PolicySpec = 'production' | 'development' | PolicyObject | Policy | (string & {});
