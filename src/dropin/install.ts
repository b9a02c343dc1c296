/**
 * install(): routes Node's own outbound APIs through a layer, so unmodified applications and libraries get the
 * socket service (policy, metering, reclaim, quotas) without an injection point.
 *
 * Two kinds of route:
 * - on the core: net.connect / net.createConnection, `new net.Socket()` (its connect), tls.connect without a
 *   `socket` (TLS on a sockguard socket), tls.connect({ socket }) over a sockguard socket (STARTTLS: TLS in the core
 *   continues that socket's connection), and whatever reaches them (https agents, http2, Node's fetch, most
 *   client libraries); with `http: true` also http agents and the global agents.
 * - policy-checked only: a Node socket that still reaches the kernel connect by another way (a socket made
 *   before install(), a subclass of net.Socket, an http.Agent without `http: true`) is vetted at that last
 *   step: an IP address by the policy at once, a name through a lookup that answers only allowed addresses.
 *   After install() no public API reaches a denied address.
 *
 * Everything patched is restored by the returned uninstall().
 */
import dgram from 'node:dgram';
import type dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import { codedError, codes, describeValue, invalidOption, systemError } from '../errors.js';
import { normalizeConnectArgs, type SocketConnectOptions } from '../tcp/args.js';
import { Socket } from '../tcp/socket.js';
import { TlsSocket } from '../tls/socket.js';
import { normalizeTlsArgs, splitTlsOptions } from './options.js';

export interface InstallOptions {
  /** Route http and https agents (the global ones and every new http.Agent) and fetch too. @default false */
  http?: boolean;
  /** `'deny'`: refuse listening servers and UDP binds to a specific address or port (EACCES). @default 'allow' */
  listen?: 'allow' | 'deny';
}

/** A destination as the layer vets it: the allowed addresses, or the EACCES error. */
export interface VetPlan {
  error?: Error;
  candidates?: Array<{ address: string; family: 4 | 6 }>;
}

/** What install() needs of a layer. */
export interface DropinLayer {
  readonly appId: string;
  connect(options: SocketConnectOptions, cb?: () => void): unknown;
  httpAgent(options?: http.AgentOptions): http.Agent;
  httpsAgent(options?: https.AgentOptions): https.Agent;
  /** An undici dispatcher, or undefined when undici is not installed. */
  globalDispatcher(): object | undefined;
  /**
   * tls.connect({ socket, ... }): TLS in the core continuing `socket`'s connection, or undefined when the socket or
   * the options call for Node's TLS over it.
   */
  _upgradeInCore(options: Record<string, unknown>, cb: (() => void) | undefined): unknown;
  /** Resolves (names) and vets one destination as connect() does; synchronous for IP literals. */
  vetConnect(host: string, port: number): VetPlan | Promise<VetPlan>;
}

interface Patch {
  target: object;
  key: PropertyKey;
  had: boolean;
  before: PropertyDescriptor | undefined;
  /** Set through assignment (an accessor such as http.globalAgent, or a slot that cannot be redefined). */
  assigned: boolean;
  old: unknown;
}

let installed: { appId: string } | undefined;

const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');

export function install(layer: DropinLayer, options: InstallOptions = {}): () => void {
  if (options === null || typeof options !== 'object') throw invalidOption('options', `must be an object. Received ${describeValue(options)}`);
  const routeHttp = options.http ?? false;
  if (typeof routeHttp !== 'boolean') throw invalidOption('http', `must be a boolean. Received ${describeValue(routeHttp)}`);
  const listen = options.listen ?? 'allow';
  if (listen !== 'allow' && listen !== 'deny') throw invalidOption('listen', `must be 'allow' or 'deny'. Received ${describeValue(listen)}`);
  if (installed !== undefined) {
    throw codedError(Error, codes.ALREADY_INSTALLED, `The socket layer of app "${installed.appId}" is already installed; uninstall it first`);
  }

  const patches: Patch[] = [];
  const patch = (target: object, key: PropertyKey, value: unknown): void => {
    const t = target as Record<PropertyKey, unknown>;
    const before = Object.getOwnPropertyDescriptor(target, key);
    // An accessor (http.globalAgent's setter also updates the agent module Node's requests read) and a slot
    // that cannot be redefined (undici's global dispatcher) are assigned; the rest is redefined.
    const assigned = before !== undefined && (before.set !== undefined || !before.configurable);
    patches.push({ target, key, had: before !== undefined, before, assigned, old: assigned ? t[key] : undefined });
    if (assigned) t[key] = value;
    else Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable: before?.enumerable ?? false });
  };

  const OrigSocket = net.Socket;
  const OrigTLSSocket = tls.TLSSocket;
  const origConnect = OrigSocket.prototype.connect;
  const connectNode = origConnect as (this: net.Socket, ...a: unknown[]) => net.Socket;
  const origTlsConnect = tls.connect;

  // --- on the core ---------------------------------------------------------------------------------------

  const connect = (...args: unknown[]): unknown => {
    const [opts, cb] = normalizeConnectArgs(args);
    return layer.connect(opts, cb);
  };
  patch(net, 'connect', connect);
  patch(net, 'createConnection', connect);

  const tlsConnect = (...args: unknown[]): unknown => {
    const [opts, cb] = normalizeTlsArgs(args);
    if (opts.socket !== undefined && opts.socket !== null) {
      // STARTTLS over a sockguard socket: the same connection goes on with TLS in the core. Any other transport
      // (or options only Node's TLS implements) gets Node's TLS over it, as before.
      const upgraded = layer._upgradeInCore(opts, cb);
      if (upgraded !== undefined) return upgraded;
      inNodeTls++;
      try {
        return origTlsConnect(opts as tls.ConnectionOptions, cb);
      } finally {
        inNodeTls--;
      }
    }
    const split = splitTlsOptions(opts);
    return layer.connect({ ...split.net, tls: split.tls }, cb);
  };
  patch(tls, 'connect', tlsConnect);

  // `new net.Socket()` is a sockguard socket (pg and others connect that way); one wrapping a descriptor or a
  // handle, or a subclass, stays Node's (and is vetted at its connect). Either one is `instanceof net.Socket`.
  // Node's own TLS code asks the same question of the socket it wraps and then expects a native handle: while it
  // runs (inside tls.connect), a sockguard socket answers as the stream it is.
  let inNodeTls = 0;
  const isSocket = (v: unknown): boolean => v instanceof OrigSocket || (inNodeTls === 0 && v instanceof Socket);
  const SocketRoute: typeof net.Socket = new Proxy(OrigSocket, {
    construct(target, args, newTarget) {
      const o = args[0] as (net.SocketConstructorOpts & Record<string, unknown>) | undefined;
      if (newTarget !== SocketRoute || (o != null && (o.fd !== undefined || o.handle !== undefined))) {
        return Reflect.construct(target, args, newTarget === SocketRoute ? target : newTarget);
      }
      return new Socket({
        layer: layer as never,
        allowHalfOpen: o?.allowHalfOpen,
        readableHighWaterMark: o?.readableHighWaterMark as number | undefined,
        writableHighWaterMark: o?.writableHighWaterMark as number | undefined,
        signal: o?.signal,
      }) as unknown as object;
    },
    // Node's own subclasses initialise through net.Socket called as a function (TLSSocket does, for servers
    // too): that stays Node's constructor.
    apply(target, thisArg, args) {
      return Reflect.apply(target, thisArg, args);
    },
    get(target, key, receiver) {
      if (key === Symbol.hasInstance) return isSocket;
      return Reflect.get(target, key, receiver);
    },
  });
  patch(net, 'Socket', SocketRoute);
  patch(net, 'Stream', SocketRoute);
  const isTlsSocket = (v: unknown): boolean => v instanceof OrigTLSSocket || v instanceof TlsSocket;
  patch(
    tls,
    'TLSSocket',
    new Proxy(OrigTLSSocket, {
      get(target, key, receiver) {
        if (key === Symbol.hasInstance) return isTlsSocket;
        return Reflect.get(target, key, receiver);
      },
    }),
  );

  // --- policy-checked only: the last step before the kernel connect of a Node socket -------------------------

  function guardedConnect(this: net.Socket, ...args: unknown[]): net.Socket {
    const [opts, cb] = Array.isArray(args[0]) ? (args[0] as [Record<string, unknown>, (() => void) | undefined]) : normalizeConnectArgs(args);
    const o = opts as Record<string, unknown>;
    if (o.path !== undefined && o.path !== null) {
      return refuse(this, systemError('EAFNOSUPPORT', { syscall: 'connect', address: String(o.path), detail: 'Unix domain sockets are not part of the outbound socket service' }));
    }
    const port = typeof o.port === 'string' && /^\d+$/.test(o.port) ? Number(o.port) : o.port;
    // A port Node itself refuses is left to Node (ERR_SOCKET_BAD_PORT, thrown as net throws it).
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return origConnect.apply(this, args as never);
    let plan: VetPlan | Promise<VetPlan>;
    try {
      plan = layer.vetConnect(typeof o.host === 'string' ? o.host : 'localhost', port);
    } catch (err) {
      return refuse(this, err as Error);
    }
    if (!(plan instanceof Promise)) {
      if (plan.error) return refuse(this, plan.error);
      // The address as the policy read it: a spelling the resolver would read otherwise cannot slip through.
      return connectNode.call(this, { ...o, host: plan.candidates![0]!.address, lookup: undefined }, cb);
    }
    return connectNode.call(this, { ...o, port, lookup: vettedLookup(layer, port) }, cb);
  }
  patch(OrigSocket.prototype, 'connect', guardedConnect);

  // --- http, https, fetch ----------------------------------------------------------------------------------

  if (routeHttp) {
    patch(http.Agent.prototype, 'createConnection', function (this: http.Agent, opts: SocketConnectOptions) {
      return layer.connect(opts);
    });
    patch(http, 'globalAgent', layer.httpAgent({ keepAlive: true, timeout: 5000, scheduling: 'lifo' } as http.AgentOptions));
    patch(https, 'globalAgent', layer.httpsAgent({ keepAlive: true, timeout: 5000, scheduling: 'lifo' } as https.AgentOptions));
    const dispatcher = layer.globalDispatcher();
    if (dispatcher !== undefined) patch(globalThis, GLOBAL_DISPATCHER, dispatcher);
  }

  // --- outbound only --------------------------------------------------------------------------------------

  if (listen === 'deny') {
    patch(net.Server.prototype, 'listen', function (this: net.Server) {
      const err = systemError('EACCES', { syscall: 'listen', detail: 'listening sockets are not part of the outbound socket service' });
      process.nextTick(() => this.emit('error', err));
      return this;
    });
    const origBind = dgram.Socket.prototype.bind;
    patch(dgram.Socket.prototype, 'bind', function (this: dgram.Socket, ...args: unknown[]) {
      const first = args[0];
      const o = first !== null && typeof first === 'object' ? (first as dgram.BindOptions) : { port: first as number | undefined, address: typeof args[1] === 'string' ? args[1] : undefined };
      const anyAddress = o.address === undefined || o.address === '0.0.0.0' || o.address === '::';
      if ((o.port !== undefined && o.port !== 0) || !anyAddress) {
        const err = systemError('EACCES', { syscall: 'bind', address: o.address, port: o.port, detail: 'binding to a specific address or port is not part of the outbound socket service' });
        process.nextTick(() => this.emit('error', err));
        return this;
      }
      return (origBind as (...a: unknown[]) => dgram.Socket).apply(this, args);
    });
  }

  syncBuiltinESMExports();
  installed = { appId: layer.appId };
  let done = false;
  return function uninstall(): void {
    if (done) return;
    done = true;
    for (const p of patches.reverse()) {
      if (p.assigned) (p.target as Record<PropertyKey, unknown>)[p.key] = p.old;
      else if (p.had) Object.defineProperty(p.target, p.key, p.before!);
      else delete (p.target as Record<PropertyKey, unknown>)[p.key];
    }
    syncBuiltinESMExports();
    installed = undefined;
  };
}

function refuse(socket: net.Socket, err: Error): net.Socket {
  process.nextTick(() => socket.destroy(err));
  return socket;
}

/**
 * A dns.lookup for one connection to `port`: resolves with the layer's resolver and answers only addresses the
 * policy allows (all of them, or the first, as asked); a destination it denies fails with the EACCES error.
 */
function vettedLookup(layer: DropinLayer, port: number): typeof dns.lookup {
  return ((hostname: string, options: unknown, callback: (...a: unknown[]) => void) => {
    const cb = typeof options === 'function' ? (options as typeof callback) : callback;
    const o = (typeof options === 'object' && options !== null ? options : typeof options === 'number' ? { family: options } : {}) as dns.LookupOptions;
    Promise.resolve()
      .then(() => layer.vetConnect(hostname, port))
      .then(
        (plan) => {
          if (plan.error) return cb(plan.error);
          let list = plan.candidates!;
          const family = o.family === 'IPv4' ? 4 : o.family === 'IPv6' ? 6 : o.family;
          if (family === 4 || family === 6) list = list.filter((c) => c.family === family);
          if (list.length === 0) return cb(systemError('ENOTFOUND', { syscall: 'getaddrinfo', address: hostname }));
          if (o.all) return cb(null, list.map((c) => ({ address: c.address, family: c.family })));
          return cb(null, list[0]!.address, list[0]!.family);
        },
        (err: unknown) => cb(err),
      );
  }) as typeof dns.lookup;
}
