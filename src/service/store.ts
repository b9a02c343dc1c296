/**
 * The fleet store (docs/service.md#fleet-quotas-and-ledger): a Redis reached through a client the layer builds
 * from a `redis://` URL (ioredis, an optional peer dependency) or one the application passes in (ioredis or
 * node-redis). Everything the fleet does is one Lua script per round trip, so each step is atomic in Redis
 * whatever the other processes do at the same moment.
 *
 * Every call is bounded by a timeout and always settles: the fleet treats a slow store as a failed one, and
 * a late answer to a call it gave up on can only have taken budget nobody uses (the fleet gets stricter, never
 * looser).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import net from 'node:net';
import { codedError, codes, describeValue, invalidOption } from '../errors.js';

// Captured before install() can patch them: the store's own connection is the service's infrastructure, not
// the application's egress, so it is neither vetted by the app's policy nor charged to its quotas.
const NodeSocket = net.Socket;
const nodeSocketConnect = net.Socket.prototype.connect;

export interface Script {
  readonly src: string;
  readonly sha: string;
}

export function script(src: string): Script {
  return { src, sha: createHash('sha1').update(src).digest('hex') };
}

export type StoreArg = string | number;

/** What the fleet needs of a Redis client: run a script, and close the client when the layer built it. */
export interface Store {
  run(s: Script, keys: readonly string[], args: readonly StoreArg[]): Promise<unknown>;
  /** Closes the client if the layer created it; a client the application passed in is left open. */
  close(): Promise<void>;
  /** Registers the client's own connection-state callbacks (error events must never go unhandled). */
  onError(listener: (err: Error) => void): void;
}

/** Longest wait for one store call before the fleet treats the store as down. */
export const STORE_TIMEOUT_MS = 1000;

export function storeUnavailable(detail: string, cause?: unknown): Error & { code: string } {
  const err = codedError(Error, codes.STORE_UNAVAILABLE, `The fleet store is unavailable: ${detail}`);
  if (cause !== undefined) (err as Error & { cause?: unknown }).cause = cause;
  return err;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(storeUnavailable(`no answer within ${ms} ms`)), ms);
    timer.unref();
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(storeUnavailable(err instanceof Error ? err.message : describeValue(err), err));
      },
    );
  });
}

const isNoScript = (err: unknown): boolean => err instanceof Error && /NOSCRIPT/.test(err.message);

type AnyClient = Record<string, unknown> & { [k: string]: unknown };

/** Adapts an ioredis client (`evalsha(sha, numkeys, ...)`) or a node-redis one (`evalSha(sha, { keys, arguments })`). */
function adapt(client: AnyClient, owned: boolean): Store {
  const fn = (name: string) => client[name] as ((...a: unknown[]) => Promise<unknown>) | undefined;
  let call: (s: Script, keys: readonly string[], args: readonly StoreArg[]) => Promise<unknown>;
  if (typeof fn('evalsha') === 'function' && typeof fn('eval') === 'function') {
    call = (s, keys, args) =>
      fn('evalsha')!.call(client, s.sha, keys.length, ...keys, ...args).catch((err: unknown) => {
        if (!isNoScript(err)) throw err;
        return fn('eval')!.call(client, s.src, keys.length, ...keys, ...args);
      });
  } else if (typeof fn('evalSha') === 'function' && typeof fn('eval') === 'function') {
    call = (s, keys, args) => {
      const options = { keys: [...keys], arguments: args.map(String) };
      return fn('evalSha')!.call(client, s.sha, options).catch((err: unknown) => {
        if (!isNoScript(err)) throw err;
        return fn('eval')!.call(client, s.src, options);
      });
    };
  } else {
    throw invalidOption('store', 'must be a redis:// URL, an ioredis client or a node-redis client (with eval and evalsha)');
  }
  return {
    run: (s, keys, args) => {
      let p: Promise<unknown>;
      try {
        p = call(s, keys, args);
      } catch (err) {
        p = Promise.reject(err);
      }
      return withTimeout(p, STORE_TIMEOUT_MS);
    },
    close: async () => {
      if (!owned) return;
      try {
        await withTimeout(Promise.resolve((fn('quit') ?? fn('disconnect'))!.call(client)), STORE_TIMEOUT_MS);
      } catch {
        // Unreachable at close: drop the connection instead of waiting for it.
      }
      fn('disconnect')?.call(client);
    },
    onError: (listener) => {
      const on = client.on as ((event: string, l: (err: Error) => void) => void) | undefined;
      if (owned && typeof on === 'function') on.call(client, 'error', listener);
    },
  };
}

let ioredisModule: { Redis: new (...a: unknown[]) => AnyClient; AbstractConnector: new (t: number) => object } | undefined;

function loadIoredis(): NonNullable<typeof ioredisModule> {
  if (ioredisModule) return ioredisModule;
  try {
    const mod = createRequire(import.meta.url)('ioredis') as Record<string, unknown>;
    const Redis = (mod.Redis ?? mod.default ?? mod) as NonNullable<typeof ioredisModule>['Redis'];
    return (ioredisModule = { Redis, AbstractConnector: mod.AbstractConnector as NonNullable<typeof ioredisModule>['AbstractConnector'] });
  } catch (err) {
    const e = codedError(Error, codes.IOREDIS_MISSING, "The store option 'redis://...' needs the ioredis package: npm install ioredis (or pass a Redis client)");
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
}

/** An ioredis Connector that opens a plain Node socket with the functions net had before any install(). */
function nodeConnector(AbstractConnector: new (t: number) => object) {
  return class NodeConnector extends (AbstractConnector as new (t: number) => {
    connecting: boolean;
    stream?: net.Socket;
    firstError?: Error;
  }) {
    readonly #options: { host?: string; port?: number; family?: number; disconnectTimeout: number };
    constructor(options: { host?: string; port?: number; family?: number; disconnectTimeout: number }) {
      super(options.disconnectTimeout);
      this.#options = options;
    }
    connect(): Promise<net.Socket> {
      this.connecting = true;
      const { host = '127.0.0.1', port = 6379, family } = this.#options;
      const socket = new NodeSocket();
      (nodeSocketConnect as (this: net.Socket, o: net.NetConnectOpts) => net.Socket).call(socket, { host, port, ...(family ? { family } : {}) });
      this.stream = socket;
      socket.once('error', (err) => (this.firstError = err));
      return Promise.resolve(socket);
    }
  };
}

/** Validates the `store` option and returns the adapted client. */
export function openStore(option: unknown): Store {
  if (typeof option === 'string') {
    let url: URL;
    try {
      url = new URL(option);
    } catch {
      throw invalidOption('store', `must be a redis://host:port/db URL or a Redis client. Received ${describeValue(option)}`);
    }
    if (url.protocol !== 'redis:') throw invalidOption('store', `must be a redis://host:port/db URL or a Redis client. Received ${describeValue(option)}`);
    const { Redis, AbstractConnector } = loadIoredis();
    const client = new Redis(option, {
      // A call the store cannot answer now fails now: the fleet decides what a failure means (storeFailure).
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times: number) => Math.min(50 * times, 500),
      connectTimeout: 2000,
      ...(typeof AbstractConnector === 'function' ? { Connector: nodeConnector(AbstractConnector) } : {}),
    });
    return adapt(client, true);
  }
  if (option === null || typeof option !== 'object') {
    throw invalidOption('store', `must be a redis://host:port/db URL or a Redis client. Received ${describeValue(option)}`);
  }
  return adapt(option as AnyClient, false);
}
