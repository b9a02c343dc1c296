/**
 * SocketLayer: one application's view of the outbound socket service — its policy, its sockets, its usage
 * ledger, its reclaim sweep and its quotas. Several layers (several apps) may live in one process; they share
 * the thread's native loop but nothing else.
 *
 * Every connection passes through `_startConnect`: validate before any I/O, resolve once, vet every address,
 * connect only to a vetted address.
 */
import { channel } from 'node:diagnostics_channel';
import { isIP } from 'node:net';
import { codedError, codes, deniedError, invalidOption, systemError } from './errors.js';
import { Ledger, type MeteredSocket, type Usage } from './service/ledger.js';
import {
  createLookup,
  loadPolicy,
  lookupService,
  reverse,
  systemResolver,
  verdictOf,
  vet,
  type Family,
  type Policy,
  type Resolver,
  type Target,
  type Verdict,
} from './policy/index.js';
import { createQuotaMeter, type QuotaMeter, type QuotasOption } from './service/quota.js';
import { DEFAULT_HIGH_WATER_MARK, RawSocket, RawState, type Candidate, type RawHandlers, type RawObserver } from './tcp/raw.js';
import { ReclaimSweeper, validateIdleTimeout, type ReclaimNode } from './service/reclaim.js';
import { Socket, normalizeConnectArgs, type SocketConnectOptions } from './tcp/socket.js';
import { kRaw } from './tcp/symbols.js';
import { UdpSocket, type UdpSocketOptions } from './udp/socket.js';

export interface SocketLayerOptions {
  /** The application this layer meters and binds descriptors to. @default env SOCKGUARD_APP_ID, else 'default' */
  appId?: string;
  /**
   * 'production' (App Engine's egress rules), 'development' (allow, but report what production would deny), a
   * policy object, or a path to a policy file. @default env SOCKGUARD_POLICY, else 'production'
   */
  policy?: unknown;
  /** Reclaim sockets after this much inactivity; 0 disables. @default env SOCKGUARD_IDLE_TIMEOUT_MS, else 600000 */
  idleTimeoutMs?: number;
  /** How often the reclaim sweep runs. @default min(1000, idleTimeoutMs / 4) */
  sweepIntervalMs?: number;
  /** 'emulate' (App Engine's mock option table) or 'native'. @default 'emulate' */
  sockopts?: 'emulate' | 'native';
  /** 'app-engine' or per-minute / per-day limits. @default undefined (no quotas) */
  quotas?: QuotasOption;
  /**
   * Wall-clock milliseconds since the UTC epoch that the quota windows read (they align to whole UTC minutes
   * and days). Inject a fake clock to test quota windows without waiting for real minutes. Idle reclaim does
   * not use it: it runs on a monotonic clock. @default Date.now
   */
  clock?: () => number;
  /** Key for descriptor tokens. @default env SOCKGUARD_SECRET, else random per process */
  secret?: string | Buffer;
  /** Name resolver; its answers are vetted like any other. @default dns.lookup, both families */
  resolver?: Resolver;
  /** Bytes queued natively per socket before write() returns false. @default 1048576 */
  highWaterMark?: number;
}

/** `layer.connectRaw()` options. */
export interface RawConnectOptions {
  host?: string;
  port: number | string;
  family?: number;
  connectTimeout?: number;
  highWaterMark?: number;
}

/**
 * What the layer tracks for its ledger, reclaim sweep and close(): the TCP raw socket and the UDP socket both
 * implement it. Counters are read live while open and folded into the ledger once, when the entry closes.
 */
export interface LayerEntry extends MeteredSocket, ReclaimNode {
  reclaimed: boolean;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number;
  /** Closes for idle reclaim: no 'error', only 'close'. */
  _reclaimClose(): void;
  /** Closes for layer.close(); resolves once the user-facing object has emitted 'close'. */
  _layerClose(): Promise<void>;
}

/** How a UDP (or any non-TCP) socket plugs into its layer. */
export interface LayerPort {
  readonly appId: string;
  readonly policy: Policy;
  readonly sockopts: 'emulate' | 'native';
  readonly quota: QuotaMeter;
  readonly ledger: Ledger;
  /** Starts tracking (ledger, reclaim); counts a socket creation. */
  admit(entry: LayerEntry): void;
  /** Operation on the entry: refreshes its reclaim deadline. O(1), no allocation. */
  touch(entry: LayerEntry): void;
  /** Stops tracking and folds the entry's final counters into the ledger. Idempotent. */
  release(entry: LayerEntry): void;
  /** Vets one destination: resolves names once, returns the first allowed address or throws EACCES with `rule`. */
  vet(host: string, port: number, family: 0 | 4 | 6, syscall: string): Candidate | Promise<Candidate>;
}

interface Plan {
  candidates?: Candidate[];
  error?: Error;
}

const denyChannel = channel('sockguard:deny');
const reclaimChannel = channel('sockguard:reclaim');

export class SocketLayer {
  readonly appId: string;
  readonly policy: Policy;
  readonly sockopts: 'emulate' | 'native';
  readonly idleTimeoutMs: number;
  /** @internal */ readonly quota: QuotaMeter;
  /** @internal */ readonly ledger: Ledger;
  /** @internal */ readonly sweeper: ReclaimSweeper<LayerEntry>;
  /** @internal the interface UDP sockets use */ readonly port: LayerPort;
  /** @internal */ readonly secret: string | Buffer | undefined;
  readonly #resolver: Resolver;
  readonly #hwm: number;
  /** Open sockets (raw level, whoever owns them). */
  readonly #open = new Set<LayerEntry>();
  readonly #observer: RawObserver;
  #closed = false;
  #closing: Promise<void> | undefined;
  #lookup: ReturnType<typeof createLookup> | undefined;
  #lastPlan: Plan | undefined;
  /** Last parse: hosts and ports repeat, and parsing allocates. Targets are never mutated. */
  #lastHost: unknown;
  #lastPort: unknown;
  #lastTarget: Target | undefined;

  constructor(options: SocketLayerOptions = {}) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'must be an object');
    const appId = options.appId ?? process.env.SOCKGUARD_APP_ID ?? 'default';
    if (typeof appId !== 'string' || appId.length === 0 || appId.length > 256) {
      throw invalidOption('appId', 'must be a non-empty string of at most 256 characters');
    }
    this.appId = appId;
    this.policy = loadPolicy(options.policy ?? (process.env.SOCKGUARD_POLICY || 'production'));
    const sockopts = options.sockopts ?? 'emulate';
    if (sockopts !== 'emulate' && sockopts !== 'native') throw invalidOption('sockopts', "must be 'emulate' or 'native'");
    this.sockopts = sockopts;
    this.idleTimeoutMs = validateIdleTimeout(
      options.idleTimeoutMs ?? process.env.SOCKGUARD_IDLE_TIMEOUT_MS,
      options.idleTimeoutMs === undefined && process.env.SOCKGUARD_IDLE_TIMEOUT_MS ? 'SOCKGUARD_IDLE_TIMEOUT_MS' : 'idleTimeoutMs',
    );
    const hwm = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    if (!Number.isSafeInteger(hwm) || hwm < 1 || hwm > 0x40000000) {
      throw invalidOption('highWaterMark', 'must be an integer between 1 and 2^30');
    }
    this.#hwm = hwm;
    if (options.resolver !== undefined && typeof options.resolver !== 'function') {
      throw invalidOption('resolver', 'must be a function (name) => Promise<Array<{ address, family }>>');
    }
    this.#resolver = options.resolver ?? systemResolver;
    if (options.clock !== undefined && typeof options.clock !== 'function') throw invalidOption('clock', 'must be a function () => number');
    this.quota = createQuotaMeter(options.quotas, { clock: options.clock });
    this.secret = options.secret ?? process.env.SOCKGUARD_SECRET ?? undefined;
    this.ledger = new Ledger(appId, () => this.#open);
    this.sweeper = new ReclaimSweeper<LayerEntry>({
      idleTimeoutMs: this.idleTimeoutMs,
      sweepIntervalMs: options.sweepIntervalMs,
      onExpire: (entry) => this.#reclaim(entry),
    });
    const open = this.#open;
    const ledger = this.ledger;
    const sweeper = this.sweeper;
    const release = (entry: LayerEntry) => {
      if (open.delete(entry)) {
        sweeper.untrack(entry);
        ledger.fold(entry);
      }
    };
    const touch = sweeper.enabled ? (entry: LayerEntry) => sweeper.refresh(entry) : () => {};
    this.#observer = { activity: touch, closed: release, overQuota: () => void ledger.overQuota++, quota: this.quota, layer: this };
    const admit = (entry: LayerEntry) => {
      if (this.#closed) throw codedError(Error, codes.LAYER_CLOSED, `The socket layer of app "${this.appId}" is closed`);
      open.add(entry);
      ledger.socketsCreated++;
      sweeper.track(entry);
    };
    this.port = {
      appId: this.appId,
      policy: this.policy,
      sockopts: this.sockopts,
      quota: this.quota,
      ledger,
      admit,
      touch,
      release,
      vet: (host, port, family, syscall) => this.#vetOne(host, port, family, syscall),
    };
  }

  /** Opens a TCP connection, like net.connect. Returns the Socket at once; failures arrive as 'error'. */
  connect(options: SocketConnectOptions, connectListener?: () => void): Socket;
  connect(port: number | string, host?: string, connectListener?: () => void): Socket;
  connect(port: number | string, connectListener?: () => void): Socket;
  connect(...args: unknown[]): Socket {
    const [options, cb] = normalizeConnectArgs(args);
    const socket = new Socket({
      layer: this,
      allowHalfOpen: options.allowHalfOpen,
      readableHighWaterMark: options.readableHighWaterMark ?? options.highWaterMark,
      writableHighWaterMark: options.writableHighWaterMark ?? options.highWaterMark,
    });
    return socket.connect(options, cb);
  }

  /** Alias of connect(), as in net. */
  createConnection(options: SocketConnectOptions, connectListener?: () => void): Socket;
  createConnection(port: number | string, host?: string, connectListener?: () => void): Socket;
  createConnection(port: number | string, connectListener?: () => void): Socket;
  createConnection(...args: unknown[]): Socket {
    return (this.connect as (...a: unknown[]) => Socket)(...args);
  }

  /**
   * Opens a raw TCP connection: callbacks, no stream. Same policy, ledger and reclaim as connect().
   */
  connectRaw(options: RawConnectOptions, handlers: RawHandlers = {}): RawSocket {
    const hwm = options.highWaterMark ?? this.#hwm;
    const raw = new RawSocket(handlers, hwm);
    const { target, port, family, refused } = this.#validate(options);
    this.#admit(raw);
    raw.markStarted();
    if (refused) raw.fail(refused);
    else this.#begin(raw, target, port, family, options.connectTimeout ?? 0, undefined, undefined);
    return raw;
  }

  /** @internal the connect path of every Socket of this layer */
  _startConnect(socket: Socket, options: SocketConnectOptions): void {
    if (options.path !== undefined) {
      throw systemError('EAFNOSUPPORT', { syscall: 'connect', address: String(options.path) });
    }
    const { target, port, family, refused } = this.#validate(options);
    const raw = socket[kRaw];
    raw.markStarted();
    if (options.timeout !== undefined) socket.setTimeout(options.timeout);
    if (options.noDelay) socket.setNoDelay(true);
    if (options.keepAlive) socket.setKeepAlive(true, options.keepAliveInitialDelay ?? 0);
    if (options.signal) {
      const signal = options.signal;
      if (signal.aborted) {
        process.nextTick(() => socket.destroy(abortError(signal)));
        return;
      }
      const onAbort = () => socket.destroy(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    this.#admit(raw);
    if (refused) {
      // A bind the service refuses is reported like a policy denial: asynchronously, as an 'error'.
      raw.fail(refused);
      return;
    }
    const resolver = options.lookup ? lookupResolver(options.lookup) : undefined;
    const connectTimeout = options.connectTimeout ?? 0;
    if (!Number.isFinite(connectTimeout) || connectTimeout < 0) {
      throw invalidOption('connectTimeout', 'must be a non-negative number of milliseconds');
    }
    this.#begin(raw, target, port, family, connectTimeout, resolver, socket);
  }

  /** Validation shared by every connect form: throws coded errors before any I/O. */
  #validate(options: { host?: string; port?: number | string; family?: number; localAddress?: string; localPort?: number }): {
    target: Target;
    port: number;
    family: 0 | 4 | 6;
    refused: Error | undefined;
  } {
    if (this.#closed) throw codedError(Error, codes.LAYER_CLOSED, `The socket layer of app "${this.appId}" is closed`);
    const family = options.family ?? 0;
    if (family !== 0 && family !== 4 && family !== 6) {
      throw invalidOption('family', `must be 0, 4 or 6. Received ${String(family)}`);
    }
    const port = typeof options.port === 'string' && /^\d+$/.test(options.port) ? Number(options.port) : options.port;
    const host = options.host ?? 'localhost';
    let target: Target;
    if (this.#lastTarget !== undefined && host === this.#lastHost && port === this.#lastPort) target = this.#lastTarget;
    else {
      target = this.policy.parse(host, port);
      this.#lastHost = host;
      this.#lastPort = port;
      this.#lastTarget = target;
    }
    let refused: Error | undefined;
    if (options.localAddress !== undefined && !isAnyAddress(options.localAddress)) {
      refused = systemError('EACCES', { syscall: 'bind', address: String(options.localAddress), port: options.localPort, detail: 'binding to a specific address is not allowed' });
    } else if (options.localPort !== undefined && options.localPort !== 0) {
      refused = systemError('EACCES', { syscall: 'bind', address: options.localAddress ?? '0.0.0.0', port: Number(options.localPort), detail: 'binding to a specific port is not allowed' });
    }
    return { target, port: port as number, family: family as 0 | 4 | 6, refused };
  }

  /** @internal the observer every raw socket of this layer reports to */
  get observer(): RawObserver {
    return this.#observer;
  }

  #admit(raw: RawSocket): void {
    raw.observer = this.#observer;
    this.port.admit(raw);
  }

  /** One vetted destination (UDP sends and connects): the first allowed address, or EACCES. */
  #vetOne(host: string, port: number, family: 0 | 4 | 6, syscall: string): Candidate | Promise<Candidate> {
    const target = this.policy.parse(host, port);
    const first = (plan: Plan): Candidate => {
      if (plan.error) {
        const err = plan.error as Error & { syscall?: string };
        if (err.syscall === 'connect') {
          err.syscall = syscall;
          err.message = err.message.replace(/^connect /, `${syscall} `);
        }
        throw err;
      }
      return plan.candidates![0]!;
    };
    const plan = this.#plan(target, port, family, undefined);
    return plan instanceof Promise ? plan.then(first) : first(plan);
  }

  #begin(
    raw: RawSocket,
    target: Target,
    port: number,
    family: 0 | 4 | 6,
    connectTimeout: number,
    resolver: Resolver | undefined,
    socket: Socket | undefined,
  ): void {
    const plan = this.#plan(target, port, family, resolver);
    if (plan instanceof Promise) {
      plan.then(
        (p) => this.#go(raw, p, port, connectTimeout, socket, target),
        (err: Error) => this.#go(raw, { error: err }, port, connectTimeout, socket, target),
      );
    } else {
      // Literal addresses connect at once; a denial still reaches the caller asynchronously, after it could
      // attach an 'error' listener (raw.fail defers the report).
      this.#go(raw, plan, port, connectTimeout, socket, target);
    }
  }

  #go(raw: RawSocket, plan: Plan, port: number, connectTimeout: number, socket: Socket | undefined, target: Target): void {
    if (raw.state !== RawState.Pending) return;
    if (plan.error) {
      raw.fail(plan.error);
      return;
    }
    const candidates = plan.candidates!;
    if (socket && target.kind === 'name') {
      const c = candidates[0]!;
      socket.emit('lookup', null, c.address, c.family, target.host);
    }
    if (this.quota.enabled) {
      const over = this.quota.check('connects') ?? this.quota.check('creates');
      if (over) {
        this.ledger.overQuota++;
        raw.fail(over);
        return;
      }
      this.quota.charge('creates');
      this.quota.charge('connects');
    }
    this.ledger.connects++;
    raw.connect(candidates, port, connectTimeout);
  }

  /** Resolves (names only) and vets; synchronous for IP literals. */
  #plan(target: Target, port: number, family: 0 | 4 | 6, resolver: Resolver | undefined): Plan | Promise<Plan> {
    if (target.kind === 'ip') {
      const d = this.policy.evaluate(target.address, target.family, port);
      if (d.allowed) {
        // Plans are never mutated, so the last literal's is reused: a client that keeps reconnecting to one
        // address allocates nothing here (connect-time garbage is what grows the young generation, i.e. RSS).
        const last = this.#lastPlan;
        if (last !== undefined && last.candidates![0]!.address === target.address) return last;
        return (this.#lastPlan = { candidates: [{ address: target.address, family: target.family }] });
      }
      return { error: this.#denied(target.address, port, d.rule, d.reason, target.host) };
    }
    const base = resolver ?? this.#resolver;
    const filtered: Resolver = family === 0 ? base : async (name) => (await base(name)).filter((a) => a.family === family);
    return vet(this.policy, target.host, port, filtered).then((v) => {
      if (v.allowed.length > 0) return { candidates: v.allowed.map((a) => ({ address: a.address, family: a.family })) };
      const first = v.denied[0];
      if (first) return { error: this.#denied(first.address, port, first.rule, first.reason, target.host) };
      const verdict = verdictOf(v, port);
      if (!verdict.allowed) return { error: this.#denied(target.host, port, verdict.rule, verdict.reason, target.host) };
      const err = systemError('ENOTFOUND', { syscall: 'getaddrinfo', address: target.host });
      (err as Error & { hostname?: string }).hostname = target.host;
      return { error: err };
    });
  }

  #denied(address: string, port: number, rule: string, reason: string, host: string): Error {
    this.ledger.denied++;
    const err = deniedError('connect', address, port, rule, reason);
    if (denyChannel.hasSubscribers) {
      denyChannel.publish({ appId: this.appId, host, address, port, rule, reason });
    }
    return err;
  }

  #reclaim(entry: LayerEntry): void {
    entry.reclaimed = true;
    this.ledger.reclaimed++;
    if (reclaimChannel.hasSubscribers) {
      reclaimChannel.publish({
        appId: this.appId,
        address: entry.remoteAddress,
        port: entry.remotePort,
        bytesSent: entry.bytesWritten,
        bytesReceived: entry.bytesRead,
      });
    }
    // No error: an unattended idle socket must not crash the process. 'close' follows.
    entry._reclaimClose();
  }

  /**
   * A dgram.Socket-compatible UDP socket: every destination vetted, counted and reclaimed like TCP; bind() only
   * to the any-address and port 0.
   */
  createSocket(
    type: 'udp4' | 'udp6' | UdpSocketOptions,
    listener?: (msg: Buffer, rinfo: { address: string; family: string; port: number; size: number }) => void,
  ): UdpSocket {
    const options = typeof type === 'string' ? { type } : type;
    return new UdpSocket(this.port, options, listener);
  }

  /**
   * Evaluates a destination against the policy without connecting. Resolves names once.
   */
  async check(host: string, port: number): Promise<Verdict> {
    const v = await vet(this.policy, host, port, this.#resolver);
    return verdictOf(v, port);
  }

  /** dns.lookup-compatible: answers only with addresses this layer's policy allows. */
  get lookup(): ReturnType<typeof createLookup> {
    return (this.#lookup ??= createLookup(this.policy, this.#resolver));
  }

  /** Reverse lookups are not provided by the service. */
  readonly reverse = reverse;
  readonly lookupService = lookupService;

  /** A snapshot of this app's usage; exact, including sockets that closed. */
  usage(): Usage {
    return this.ledger.usage();
  }

  /** Number of open sockets. */
  get size(): number {
    return this.#open.size;
  }

  /** Destroys every socket of the layer; resolves once all are closed. Later connects fail. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    const waits: Promise<void>[] = [];
    for (const entry of [...this.#open]) waits.push(entry._layerClose());
    this.sweeper.close();
    this.#closing = Promise.all(waits).then(() => undefined);
    return this.#closing;
  }
}

function isAnyAddress(a: unknown): boolean {
  return a === '0.0.0.0' || a === '::' || a === '' || a === '0:0:0:0:0:0:0:0';
}

function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  (err as Error & { code: string }).code = 'ABORT_ERR';
  return err;
}

/** Adapts a dns.lookup-style function (net's `lookup` option) into a Resolver; its answers are still vetted. */
function lookupResolver(lookup: NonNullable<SocketConnectOptions['lookup']>): Resolver {
  return (name) =>
    new Promise((resolve, reject) => {
      lookup(name, { all: true, family: 0 }, (err: Error | null, addresses: unknown, family?: number) => {
        if (err) return reject(err);
        if (Array.isArray(addresses)) {
          resolve(addresses.map((a: { address: string; family: number }) => ({ address: a.address, family: (a.family === 6 ? 6 : 4) as Family })));
        } else {
          const fam = family ?? isIP(String(addresses));
          resolve([{ address: String(addresses), family: (fam === 6 ? 6 : 4) as Family }]);
        }
      });
    });
}
