/**
 * SocketLayer: one application's view of the outbound socket service — its policy, its sockets, its usage
 * ledger, its reclaim sweep and its quotas. Several layers (several apps) may live in one process; they share
 * the thread's native loop but nothing else.
 *
 * Transports reach the layer only through its port (service/port.ts). Every TCP connection passes through
 * `validateConnect` (every option checked before anything is admitted) and `connect` (resolve once, vet every
 * address, connect only to a vetted address).
 */
import { channel } from 'node:diagnostics_channel';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { codedError, codes, deniedError, describeValue, invalidArg, invalidOption, systemError } from './errors.js';
import { bindRefusal } from './service/bind.js';
import { Ledger, type Usage } from './service/ledger.js';
import {
  createLookup,
  loadPolicy,
  lookupService,
  reverse,
  systemResolver,
  verdictOf,
  vet,
  vetWithProduction,
  type Family,
  type Policy,
  type PolicySpec,
  type Resolver,
  type Target,
  type Verdict,
} from './policy/index.js';
import {
  provideDefaultPort,
  type Candidate,
  type ConnectClient,
  type ConnectRequest,
  type HandoffSide,
  type LayerEntry,
  type LayerPort,
  type ValidatedConnect,
} from './service/port.js';
import { formatMetrics, observe, type MeterLike } from './service/metrics.js';
import { createQuotaMeter, validateQuotas, type QuotaMeter, type QuotasOption } from './service/quota.js';
import { Fleet, validateStoreFailure, validateStoreFlushMs } from './service/fleet.js';
import { openStore } from './service/store.js';
import { ReclaimSweeper, validateIdleTimeout } from './service/reclaim.js';
import { DEFAULT_HIGH_WATER_MARK, TLS_HIGH_WATER_MARK, RawSocket, RawState, validateHighWaterMark, type RawHandlers } from './tcp/raw.js';
import { Socket, TIMEOUT_MAX, normalizeConnectArgs, type SocketConnectOptions } from './tcp/socket.js';
import { UdpSocket, type UdpSocketOptions } from './udp/socket.js';
import { tlsParams, unsupportedKey, validateEngine, type TlsConnectOptions, type UpgradeTlsOptions } from './tls/context.js';
import { TlsSocket } from './tls/socket.js';
import { install, type InstallOptions, type VetPlan } from './dropin/install.js';
import { dispatcher, httpAgent, httpsAgent, optionalDispatcher } from './dropin/agents.js';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type https from 'node:https';
import { native, type NativeBinding } from './core/native.js';
import { defaultKey } from './handoff/park.js';
import { attach } from './handoff/attach.js';

export type { LayerEntry, LayerPort };

export interface SocketLayerOptions {
  /** The application this layer meters and binds descriptors to. @default env SOCKGUARD_APP_ID, else 'default' */
  appId?: string;
  /**
   * 'production' (App Engine's egress rules), 'development' (allow, but report what production would deny), a
   * policy object, or a path to a policy file. @default env SOCKGUARD_POLICY, else 'production'
   */
  policy?: PolicySpec;
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
  /**
   * Shares quotas and the usage ledger with every process of this appId: a `redis://host:port/db` URL (needs
   * the ioredis package) or a connected ioredis or node-redis client. @default undefined (this process only)
   */
  store?: string | object;
  /**
   * With the store unreachable: 'open' keeps enforcing this process's share of each limit (limit divided by
   * the live processes last seen), 'closed' refuses what needs the store with ERR_SOCKGUARD_STORE_UNAVAILABLE.
   * @default 'open'
   */
  storeFailure?: 'open' | 'closed';
  /** How often the ledger is flushed to the store (its staleness bound) and leases are topped up. @default 1000 */
  storeFlushMs?: number;
}

/** `layer.connectRaw()` options. */
export interface RawConnectOptions {
  host?: string;
  port: number | string;
  family?: number;
  connectTimeout?: number;
  highWaterMark?: number;
}

interface Plan {
  candidates?: Candidate[];
  error?: Error;
}

/** What validateConnect hands to connect, opaque to transports. */
interface ConnectPlan {
  target: Target;
  resolver: Resolver | undefined;
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
  /** @internal the interface every transport uses to reach this layer */ readonly port: LayerPort<ConnectPlan>;
  /** Not a property: a key must not be readable by whoever holds the layer. */
  readonly #secret: string | Buffer | undefined;
  /** @internal the shared store's side of this layer, with the `store` option */ readonly fleet: Fleet | undefined;
  readonly #resolver: Resolver;
  readonly #hwm: number;
  /** Open sockets (raw level, whoever owns them). */
  readonly #open = new Set<LayerEntry>();
  #closed = false;
  #closing: Promise<void> | undefined;
  #lookup: ReturnType<typeof createLookup> | undefined;
  #lastPlan: Plan | undefined;
  /** Last parse: hosts and ports repeat, and parsing allocates. Targets are never mutated. */
  #lastHost: unknown;
  #lastPort: unknown;
  #lastTarget: Target | undefined;
  #lastValid: ValidatedConnect<ConnectPlan> | undefined;

  constructor(options: SocketLayerOptions = {}) {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'must be an object');
    const appId = options.appId ?? process.env.SOCKGUARD_APP_ID ?? 'default';
    if (typeof appId !== 'string' || appId.length === 0 || appId.length > 256) {
      throw invalidOption('appId', 'must be a non-empty string of at most 256 characters');
    }
    this.appId = appId;
    this.policy =
      options.policy !== undefined
        ? loadPolicy(options.policy)
        : process.env.SOCKGUARD_POLICY
          ? loadPolicy(process.env.SOCKGUARD_POLICY, 'SOCKGUARD_POLICY')
          : loadPolicy('production');
    const sockopts = options.sockopts ?? 'emulate';
    if (sockopts !== 'emulate' && sockopts !== 'native') throw invalidOption('sockopts', "must be 'emulate' or 'native'");
    this.sockopts = sockopts;
    this.idleTimeoutMs = validateIdleTimeout(
      options.idleTimeoutMs ?? process.env.SOCKGUARD_IDLE_TIMEOUT_MS,
      options.idleTimeoutMs === undefined && process.env.SOCKGUARD_IDLE_TIMEOUT_MS ? 'SOCKGUARD_IDLE_TIMEOUT_MS' : 'idleTimeoutMs',
    );
    this.#hwm = options.highWaterMark === undefined ? DEFAULT_HIGH_WATER_MARK : validateHighWaterMark(options.highWaterMark);
    if (options.resolver !== undefined && typeof options.resolver !== 'function') {
      throw invalidOption('resolver', 'must be a function (name) => Promise<Array<{ address, family }>>');
    }
    this.#resolver = options.resolver ?? systemResolver;
    if (options.clock !== undefined && typeof options.clock !== 'function') throw invalidOption('clock', 'must be a function () => number');
    const storeFailure = validateStoreFailure(options.storeFailure);
    const storeFlushMs = validateStoreFlushMs(options.storeFlushMs);
    const secret = options.secret ?? (process.env.SOCKGUARD_SECRET || undefined);
    if (secret !== undefined && !((typeof secret === 'string' || Buffer.isBuffer(secret)) && secret.length > 0)) {
      throw invalidOption('secret', `must be a non-empty string or Buffer. Received ${describeValue(secret)}`);
    }
    this.#secret = secret;
    const tokenKey = secret === undefined ? undefined : Buffer.from(secret);
    this.ledger = new Ledger(appId, () => this.#open);
    if (options.store !== undefined) {
      const limits = validateQuotas(options.quotas);
      this.fleet = new Fleet({
        appId,
        store: openStore(options.store),
        failure: storeFailure,
        flushMs: storeFlushMs,
        clock: options.clock ?? Date.now,
        limits,
        usage: () => this.ledger.usage(),
      });
    }
    this.quota = this.fleet?.meter ?? createQuotaMeter(options.quotas, { clock: options.clock });
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
    const transfer = (from: LayerEntry, to: LayerEntry) => {
      if (open.delete(from)) {
        sweeper.untrack(from);
        open.add(to);
        sweeper.track(to);
      }
    };
    const touch = sweeper.enabled ? (entry: LayerEntry) => sweeper.refresh(entry) : () => {};
    const admit = (entry: LayerEntry) => {
      if (this.#closed) throw codedError(Error, codes.LAYER_CLOSED, `The socket layer of app "${this.appId}" is closed`);
      open.add(entry);
      ledger.socketsCreated++;
      sweeper.track(entry);
    };
    const handoff: HandoffSide = {
      appId,
      idleTimeoutMs: this.idleTimeoutMs,
      key: () => tokenKey ?? defaultKey(),
      parkedReclaimed: (info) => {
        ledger.reclaimed++;
        if (reclaimChannel.hasSubscribers) reclaimChannel.publish({ appId, ...info, parked: true });
      },
    };
    this.port = {
      appId: this.appId,
      handoff,
      sockopts: this.sockopts,
      quota: this.quota,
      highWaterMark: this.#hwm,
      tlsHighWaterMark: options.highWaterMark === undefined ? TLS_HIGH_WATER_MARK : this.#hwm,
      admit,
      touch,
      release,
      transfer,
      overQuota: () => void ledger.overQuota++,
      connected: () => void ledger.connects++,
      vet: (host, port, family, syscall) => this.#vetOne(host, port, family, syscall),
      validateConnect: (request) => this.#validateConnect(request),
      connect: (client, request) => this.#connect(client, request),
    };
  }

  /** Opens a TCP connection, like net.connect. Returns the Socket at once; failures arrive as 'error'. */
  connect(options: SocketConnectOptions & { tls: true | TlsConnectOptions }, secureConnectListener?: () => void): TlsSocket | tls.TLSSocket;
  connect(options: SocketConnectOptions, connectListener?: () => void): Socket;
  connect(port: number | string, host?: string, connectListener?: () => void): Socket;
  connect(port: number | string, connectListener?: () => void): Socket;
  connect(...args: unknown[]): Socket | tls.TLSSocket {
    const [options, cb] = normalizeConnectArgs(args);
    if (options.tls !== undefined && options.tls !== false) return this.#connectTls(options, cb);
    const socket = new Socket({
      layer: this,
      allowHalfOpen: options.allowHalfOpen,
      readableHighWaterMark: options.readableHighWaterMark ?? options.highWaterMark,
      writableHighWaterMark: options.writableHighWaterMark ?? options.highWaterMark,
    });
    return socket.connect(options, cb);
  }

  /**
   * connect({ tls }): TLS in the native core (a TlsSocket) when the runtime provides OpenSSL and the options ask
   * only for what it implements; otherwise the runtime's tls.connect over a sockguard socket. Either way the
   * policy, ledger, quotas and reclaim apply to the connection underneath, and the callback is 'secureConnect'.
   */
  #connectTls(options: SocketConnectOptions, cb: (() => void) | undefined): TlsSocket | tls.TLSSocket {
    const o = options.tls === true ? {} : options.tls;
    if (o === null || typeof o !== 'object') throw invalidOption('tls', `must be a boolean or an object of TLS options. Received ${describeValue(o)}`);
    const engine = validateEngine(o.engine);
    const unsupported = unsupportedKey(o);
    if (engine === 'native' && unsupported !== undefined) {
      throw invalidOption(`tls.${unsupported}`, "is not implemented by the native TLS engine (use engine: 'node' or 'auto')");
    }
    const nat = nativeTls();
    if (engine === 'native' && nat === undefined) {
      throw codedError(Error, codes.TLS_UNAVAILABLE, 'The native TLS engine needs an OpenSSL exported by the runtime (Node does; Bun and Deno do not)');
    }
    const { tls: _tls, ...plain } = options;
    const host = typeof plain.host === 'string' ? plain.host : 'localhost';
    if (engine === 'node' || nat === undefined || unsupported !== undefined) {
      const { engine: _engine, ...tlsOptions } = o;
      // The TLS socket decides when its side ends (after its close_notify); the socket under it must not end
      // itself first when the peer's FIN arrives, or that close_notify would be a write after end.
      const socket = this.connect({ ...plain, allowHalfOpen: true });
      return tls.connect({ ...(tlsOptions as tls.ConnectionOptions), allowHalfOpen: plain.allowHalfOpen, socket, host } as tls.ConnectionOptions, cb);
    }
    const params = tlsParams(nat, o, host);
    const socket = new TlsSocket(
      {
        layer: this,
        allowHalfOpen: options.allowHalfOpen,
        readableHighWaterMark: options.readableHighWaterMark ?? options.highWaterMark,
        writableHighWaterMark: options.writableHighWaterMark ?? options.highWaterMark,
      },
      params,
    );
    if (typeof cb === 'function') socket.once('secureConnect', cb);
    socket.connect(plain);
    return socket;
  }

  /**
   * TLS on a connection that is already open (STARTTLS), as tls.connect({ socket, ...options }) but in the core:
   * a sockguard Socket that is connected (or still connecting), not ending and with no write of its own still
   * buffered becomes the underlying socket of a TlsSocket on the same native connection (counters, ledger, quotas,
   * reclaim and the policy verdict carry over). Anything else, and options only Node's tls implements, gets the
   * runtime's tls.connect({ socket }) over it, as `engine: 'auto'` does for connect({ tls }). The callback is
   * 'secureConnect'.
   */
  upgradeTls(socket: Socket | Duplex, options: UpgradeTlsOptions = {}, secureConnectListener?: () => void): TlsSocket | tls.TLSSocket {
    if (options === null || typeof options !== 'object') throw invalidOption('options', `must be an object of TLS options. Received ${describeValue(options)}`);
    const upgraded = this._upgradeInCore({ ...options, socket }, secureConnectListener, true);
    if (upgraded !== undefined) return upgraded;
    const { engine: _engine, ...rest } = options;
    return tls.connect({ ...(rest as tls.ConnectionOptions), socket: socket as Duplex }, secureConnectListener);
  }

  /**
   * @internal tls.connect({ socket, ... }) options: the TlsSocket that continues `socket`'s connection in the core,
   * or undefined when the socket or the options call for Node's TLS over it. With `strict`, `engine: 'native'`
   * that cannot be honoured throws (as connect({ tls }) does) instead of answering undefined.
   */
  _upgradeInCore(options: Record<string, unknown>, cb: (() => void) | undefined, strict = false): TlsSocket | undefined {
    const { socket, host, port: _port, allowHalfOpen, ...tlsOptions } = options as Record<string, unknown> & { socket: unknown };
    const o = tlsOptions as TlsConnectOptions;
    const engine = validateEngine(o.engine);
    if (engine === 'node') return undefined;
    const native = engine === 'native' && strict;
    const unsupported = unsupportedKey(o);
    if (unsupported !== undefined) {
      if (native) throw invalidOption(`tls.${unsupported}`, "is not implemented by the native TLS engine (use engine: 'node' or 'auto')");
      return undefined;
    }
    const nat = nativeTls();
    if (nat === undefined) {
      if (native) throw codedError(Error, codes.TLS_UNAVAILABLE, 'The native TLS engine needs an OpenSSL exported by the runtime (Node does; Bun and Deno do not)');
      return undefined;
    }
    if (!upgradable(socket)) {
      if (native) throw codedError(Error, codes.TLS_UNAVAILABLE, 'Only a sockguard socket that is connected or connecting, not ending and with no write of its own still buffered can be upgraded in the core');
      return undefined;
    }
    if (allowHalfOpen !== undefined && typeof allowHalfOpen !== 'boolean') return undefined;
    // As tls.connect: the certificate is checked against servername, else host; SNI is sent only for servername.
    const name = typeof host === 'string' && host !== '' ? host : 'localhost';
    const params = tlsParams(nat, o, name);
    params.sni = typeof o.servername === 'string' && o.servername !== '' && isIP(o.servername) === 0 ? o.servername : null;
    const s = TlsSocket.upgrade(socket, { allowHalfOpen: allowHalfOpen as boolean | undefined }, params);
    if (s !== undefined && typeof cb === 'function') s.once('secureConnect', cb);
    return s;
  }

  /**
   * Routes Node's own outbound APIs through this layer (net.connect, new net.Socket().connect, tls.connect,
   * http2, and what reaches them; with `http: true` the http/https agents and fetch too), and vets whatever
   * still reaches a kernel connect another way. `listen: 'deny'` refuses listening and specific binds.
   * Returns uninstall(), which restores Node's functions.
   */
  install(options?: InstallOptions): () => void {
    return install(this, options);
  }

  /** A keep-alive-capable http.Agent whose connections are this layer's sockets. */
  httpAgent(options?: http.AgentOptions): http.Agent {
    return httpAgent(this, options);
  }

  /** An https.Agent whose connections are this layer's TLS sockets (TLS on the core where it can run). */
  httpsAgent(options?: https.AgentOptions): https.Agent {
    return httpsAgent(this, options);
  }

  /** An undici Dispatcher for fetch(url, { dispatcher }) (needs the undici package). */
  dispatcher(options?: Record<string, unknown>): object {
    return dispatcher(this, options);
  }

  /** @internal install({ http: true })'s fetch dispatcher, when undici is there */
  globalDispatcher(): object | undefined {
    return optionalDispatcher(this);
  }

  /** @internal one destination vetted as connect() vets it (install()'s last-step check) */
  vetConnect(host: string, port: number): VetPlan | Promise<VetPlan> {
    const target = this.policy.parse(host, port);
    return this.#plan(target, port, 0, undefined);
  }

  /**
   * Resumes a connection another socket of this app detached (`socket.detach()`), in this thread: returns a Socket
   * at once, which emits 'connect' once the connection is back (the bytes that travelled with it come first, then
   * what the peer sent since), or 'error': EACCES for a token of another app, signed with another key, or not a
   * token at all; EPIPE for one already attached, or whose connection was closed or reclaimed.
   */
  attach(token: string): Socket {
    if (this.#closed) throw codedError(Error, codes.LAYER_CLOSED, `The socket layer of app "${this.appId}" is closed`);
    if (typeof token !== 'string') throw invalidArg('token', 'string', token);
    const socket = new Socket({ layer: this });
    attach(this.port.handoff!, this.port, socket, token);
    return socket;
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
    if (options === null || typeof options !== 'object') {
      throw invalidArg('options', 'object', options);
    }
    if (handlers === null || typeof handlers !== 'object') {
      throw invalidArg('handlers', 'object', handlers);
    }
    for (const name of HANDLER_NAMES) {
      const fn = handlers[name];
      if (fn !== undefined && typeof fn !== 'function') {
        throw invalidArg(`handlers.${name}`, 'function', fn);
      }
    }
    const hwm = options.highWaterMark === undefined ? this.#hwm : validateHighWaterMark(options.highWaterMark);
    const request = this.#validateConnect(options);
    const raw = new RawSocket(handlers, hwm);
    raw.port = this.port;
    this.#connect(raw, request);
    return raw;
  }

  /** Validation shared by every connect form: throws coded errors before any I/O and before any admission. */
  #validateConnect(options: ConnectRequest): ValidatedConnect<ConnectPlan> {
    if (this.#closed) throw codedError(Error, codes.LAYER_CLOSED, `The socket layer of app "${this.appId}" is closed`);
    const family = options.family ?? 0;
    if (family !== 0 && family !== 4 && family !== 6) {
      throw invalidOption('family', `must be 0, 4 or 6. Received ${describeValue(family)}`);
    }
    const connectTimeout = options.connectTimeout ?? 0;
    if (typeof connectTimeout !== 'number' || !Number.isFinite(connectTimeout) || connectTimeout < 0 || connectTimeout > TIMEOUT_MAX) {
      throw invalidOption('connectTimeout', `must be a number of milliseconds between 0 and ${TIMEOUT_MAX}. Received ${describeValue(connectTimeout)}`);
    }
    const lookup = options.lookup;
    if (lookup !== undefined && typeof lookup !== 'function') {
      throw invalidOption('lookup', `must be a dns.lookup-compatible function. Received ${describeValue(lookup)}`);
    }
    const port = typeof options.port === 'string' && /^\d+$/.test(options.port) ? Number(options.port) : options.port;
    const host = options.host ?? 'localhost';
    let target: Target;
    if (this.#lastTarget !== undefined && host === this.#lastHost && port === this.#lastPort) target = this.#lastTarget;
    else {
      target = this.policy.parse(host as string, port as number);
      this.#lastHost = host;
      this.#lastPort = port;
      this.#lastTarget = target;
    }
    const refused = bindRefusal(options.localAddress, options.localPort);
    if (refused === undefined && lookup === undefined) {
      // Validated requests are never mutated, so a client reconnecting the same way allocates nothing here
      // (connect-time garbage is what grows the young generation, i.e. RSS per socket).
      const last = this.#lastValid;
      if (last !== undefined && last.plan.target === target && last.port === port && last.family === family && last.connectTimeout === connectTimeout) {
        return last;
      }
      return (this.#lastValid = { port: port as number, family: family as 0 | 4 | 6, connectTimeout, refused, plan: { target, resolver: undefined } });
    }
    const plan: ConnectPlan = { target, resolver: lookup ? lookupResolver(lookup as LookupFunction) : undefined };
    return { port: port as number, family: family as 0 | 4 | 6, connectTimeout, refused, plan };
  }

  /** Admits a validated connection and starts it; its timeout bounds resolution and policy too. */
  #connect(client: ConnectClient, request: ValidatedConnect<ConnectPlan>): void {
    this.port.admit(client);
    client.markStarted();
    if (request.refused) {
      // A bind the service refuses is reported like a policy denial: asynchronously, as an 'error'.
      client.fail(request.refused);
      return;
    }
    if (request.connectTimeout > 0) client.startConnectTimer(request.connectTimeout);
    const { target, resolver } = request.plan;
    const plan = this.#plan(target, request.port, request.family, resolver);
    if (plan instanceof Promise) {
      plan.then(
        (p) => this.#go(client, p, request.port, target),
        (err: unknown) => this.#go(client, { error: coded(err) }, request.port, target),
      );
    } else {
      // Literal addresses connect at once; a denial still reaches the caller asynchronously, after it could
      // attach an 'error' listener (fail() defers the report).
      this.#go(client, plan, request.port, target);
    }
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

  #go(client: ConnectClient, plan: Plan, port: number, target: Target): void {
    if (!client.pendingConnect) return;
    if (plan.error) {
      client.fail(plan.error);
      return;
    }
    const candidates = plan.candidates!;
    if (target.kind === 'name') {
      const c = candidates[0]!;
      client.resolved(c.address, c.family, target.host);
    }
    if (this.quota.enabled) {
      const refused = this.quota.acquire(CONNECT_RESOURCES);
      if (refused instanceof Promise) {
        // A fleet meter with no lease at hand asks the store first; the kernel connect waits for its answer.
        refused.then(
          (err) => this.#admitted(client, err, candidates, port),
          (err: unknown) => this.#admitted(client, err as Error, candidates, port),
        );
        return;
      }
      if (refused !== null) {
        this.#refused(client, refused);
        return;
      }
    }
    this.ledger.connects++;
    client.connect(candidates, port);
  }

  #admitted(client: ConnectClient, err: Error | null, candidates: Candidate[], port: number): void {
    if (err !== null) {
      if (client.pendingConnect) this.#refused(client, err);
      return;
    }
    // Destroyed or timed out while waiting: the lease it took is spent, as a refused kernel connect's would be.
    if (!client.pendingConnect) return;
    this.ledger.connects++;
    client.connect(candidates, port);
  }

  #refused(client: ConnectClient, err: Error): void {
    if ((err as Error & { code?: string }).code === codes.OVER_QUOTA) this.port.overQuota();
    client.fail(err);
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
    // Queued bytes, or kernel counters that moved without a call from JS (a slow peer taking a large write),
    // mean the socket is in use: its deadline starts again instead.
    if (entry._busy()) {
      this.sweeper.track(entry);
      return;
    }
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
    const { vetted, production } = await vetWithProduction(this.policy, host, port, this.#resolver);
    const verdict = verdictOf(vetted, port);
    return production === undefined ? verdict : { ...verdict, production };
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

  /** usage() as Prometheus text exposition (docs/api.md#metrics): one series per metric, labelled app_id. */
  metrics(): string {
    return formatMetrics([this.ledger.usage()]);
  }

  /**
   * Publishes usage() as OpenTelemetry observable instruments on `meter` (default: `@opentelemetry/api`'s global
   * meter provider, which needs that package). Returns a function that unregisters them.
   */
  observe(meter?: MeterLike): () => void {
    return observe(() => this.ledger.usage(), meter);
  }

  /**
   * The app's totals across every process sharing the `store` (same fields as usage()); this process's
   * counters are flushed first. Rejects with ERR_SOCKGUARD_STORE_UNAVAILABLE when the store cannot answer,
   * and with ERR_SOCKGUARD_INVALID_OPTION on a layer without a store.
   */
  async fleetUsage(): Promise<Usage> {
    if (this.fleet === undefined) throw invalidOption('store', 'is not set: fleetUsage() needs a store shared by the processes of the app');
    return this.fleet.fleetUsage();
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
    const fleet = this.fleet;
    // The last flush runs once every socket is closed, so the store sees this process leave with none open.
    this.#closing = Promise.all(waits).then(() => fleet?.close());
    return this.#closing;
  }
}

type LookupFunction = NonNullable<SocketConnectOptions['lookup']>;

const CONNECT_RESOURCES = ['connects', 'creates'] as const;

const HANDLER_NAMES = ['onconnect', 'ondata', 'onend', 'ondrain', 'onfinish', 'onclose'] as const;

/** Errors from a user's resolver or lookup reach the socket with a code, as a resolver failure. */
function coded(err: unknown): Error {
  if (err instanceof Error && typeof (err as Error & { code?: unknown }).code === 'string') return err;
  const wrapped = systemError('EAI_FAIL', { syscall: 'getaddrinfo', detail: err instanceof Error ? err.message : describeValue(err) });
  (wrapped as Error & { cause?: unknown }).cause = err;
  return wrapped;
}

/**
 * Adapts a dns.lookup-style function (net's `lookup` option) into a Resolver; its answers are still vetted. An
 * answer that is not an address (or a list of `{ address, family }`) fails the lookup with a coded error.
 */
function lookupResolver(lookup: LookupFunction): Resolver {
  return (name) =>
    new Promise((resolve, reject) => {
      const bad = (what: unknown) =>
        reject(systemError('EAI_FAIL', { syscall: 'getaddrinfo', address: name, detail: `lookup answered ${describeValue(what)}` }));
      lookup(name, { all: true, family: 0 }, (err: unknown, addresses: unknown, family?: unknown) => {
        if (err) return reject(err);
        if (typeof addresses === 'string') {
          const fam = family === 6 || family === 4 ? family : isIP(addresses);
          return resolve([{ address: addresses, family: (fam === 6 ? 6 : 4) as Family }]);
        }
        if (!Array.isArray(addresses)) return bad(addresses);
        const out: Array<{ address: string; family: Family }> = [];
        for (const a of addresses as unknown[]) {
          const address = a !== null && typeof a === 'object' ? (a as { address?: unknown }).address : undefined;
          if (typeof address !== 'string') return bad(a);
          const fam = (a as { family?: unknown }).family;
          out.push({ address, family: (fam === 6 || fam === 'IPv6' || (fam === undefined && isIP(address) === 6) ? 6 : 4) as Family });
        }
        resolve(out);
      });
    });
}

let defaultLayer: SocketLayer | undefined;

/** The layer behind the module-level shortcuts, built on first use from SOCKGUARD_* environment variables. */
export function getDefaultLayer(): SocketLayer {
  return (defaultLayer ??= new SocketLayer());
}

provideDefaultPort(() => getDefaultLayer().port);

/**
 * Whether TLS in the core can continue this socket's connection: a sockguard Socket (not already TLS) that is
 * connected or connecting, not ending, closed, reclaimed or handed off, whose stream holds no write of its own
 * (corked, or waiting for the queue to drain): those would have to leave before the ClientHello.
 */
function upgradable(socket: unknown): socket is Socket {
  if (!(socket instanceof Socket) || socket instanceof TlsSocket) return false;
  if (socket.destroyed || socket.writableEnded || socket.reclaimed) return false;
  const ws = (socket as unknown as { _writableState: { length: number; corked: number } })._writableState;
  if (ws.length > 0 || ws.corked > 0) return false;
  return socket.raw.canPass || (socket.connecting && socket.raw.state !== RawState.Closed);
}

/** The binding when it can run TLS, else undefined (no addon, or a runtime without an exported OpenSSL). */
function nativeTls(): NativeBinding | undefined {
  try {
    const nat = native();
    return nat.tls_available() ? nat : undefined;
  } catch {
    return undefined;
  }
}
