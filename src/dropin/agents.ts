/**
 * HTTP clients on a layer: http and https agents whose connections are the layer's sockets (keep-alive pools;
 * a pooled socket the layer reclaims closes like any idle keep-alive socket, leaves the pool, and the next
 * request opens a new one), and an undici dispatcher for fetch. Every connection, each redirect hop's included,
 * goes through the layer's connect(), so each destination is vetted.
 */
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { codedError, codes } from '../errors.js';
import type { SocketConnectOptions } from '../tcp/args.js';
import { splitTlsOptions } from './options.js';
import type { TlsConnectOptions } from '../tls/context.js';

/** What the agents need of a layer. */
export interface AgentLayer {
  connect(options: SocketConnectOptions, cb?: () => void): unknown;
}


/** https.Agent's private session cache, used as Node's own https.Agent uses it. */
interface SessionCache {
  _getSession(key: string): Buffer | undefined;
  _cacheSession(key: string, session: Buffer): void;
  _evictSession(key: string): void;
}

export function httpAgent(layer: AgentLayer, options?: http.AgentOptions): http.Agent {
  class LayerAgent extends http.Agent {
    // The agent takes the socket returned here at once; it listens for 'connect' itself.
    override createConnection(opts: http.ClientRequestArgs): Duplex {
      return layer.connect(opts as SocketConnectOptions) as Duplex;
    }
  }
  return new LayerAgent(options);
}

export function httpsAgent(layer: AgentLayer, options?: https.AgentOptions): https.Agent {
  class LayerHttpsAgent extends https.Agent {
    override createConnection(options: https.RequestOptions): Duplex {
      const opts = options as Record<string, unknown>;
      const self = this as unknown as SessionCache;
      const key = typeof opts._agentKey === 'string' ? opts._agentKey : undefined;
      let o = { ...opts };
      if (key !== undefined) {
        const session = self._getSession(key);
        if (session) o = { session, ...o };
      }
      const split = splitTlsOptions(o);
      const socket = layer.connect({ ...split.net, tls: split.tls }) as Duplex;
      if (key !== undefined) {
        socket.on('session', (session: Buffer) => self._cacheSession(key, session));
        socket.once('close', (hadError: boolean) => {
          if (hadError) self._evictSession(key);
        });
      }
      return socket;
    }
  }
  return new LayerHttpsAgent(options);
}

const require = createRequire(import.meta.url);
let undici: { Agent: new (opts: object) => object } | null | undefined;

/** The undici package when the application has it (an optional peer dependency), else null. */
function loadUndici(): { Agent: new (opts: object) => object } | null {
  if (undici !== undefined) return undici;
  try {
    undici = require('undici') as { Agent: new (opts: object) => object };
  } catch {
    undici = null;
  }
  return undici;
}

interface ConnectorOptions {
  hostname: string;
  host?: string;
  protocol: string;
  port: string | number;
  servername?: string;
  httpSocket?: unknown;
}

const SESSIONS_MAX = 100;

/**
 * An undici Agent whose connections are the layer's (TLS on the core for https). For `fetch(url, { dispatcher })`
 * with Node's fetch or undici's, and as the global dispatcher. `options.tls` (TLS options of connect({ tls }):
 * `ca`, `cert`/`key`, `rejectUnauthorized`, ...) applies to every https origin; the other options are undici
 * Agent's. Throws ERR_SOCKGUARD_UNDICI_MISSING without undici.
 */
export function dispatcher(layer: AgentLayer, options: Record<string, unknown> = {}): object {
  const { tls: tlsOptions, ...agentOptions } = options as { tls?: TlsConnectOptions };
  const u = loadUndici();
  if (u === null) {
    throw codedError(Error, codes.UNDICI_MISSING, 'layer.dispatcher() needs the undici package: npm install undici');
  }
  const sessions = new Map<string, Buffer>();
  const connect = (o: ConnectorOptions, callback: (err: Error | null, socket?: unknown) => void): void => {
    const secure = o.protocol === 'https:';
    const port = Number(o.port) || (secure ? 443 : 80);
    const servername = o.servername || o.hostname;
    const session = secure ? sessions.get(servername) : undefined;
    const socket = layer.connect({
      host: o.hostname,
      port,
      tls: secure ? { ...tlsOptions, servername, ALPNProtocols: ['http/1.1'], ...(session ? { session } : {}) } : undefined,
    }) as Duplex;
    let settled = false;
    const done = (err: Error | null) => {
      if (settled) return;
      settled = true;
      socket.removeListener('error', onError);
      if (err) callback(err);
      else callback(null, socket);
    };
    const onError = (err: Error) => {
      if (secure) sessions.delete(servername);
      done(err);
    };
    socket.once('error', onError);
    socket.once(secure ? 'secureConnect' : 'connect', () => done(null));
    if (secure) {
      socket.on('session', (s: Buffer) => {
        sessions.delete(servername);
        sessions.set(servername, s);
        if (sessions.size > SESSIONS_MAX) sessions.delete(sessions.keys().next().value as string);
      });
    }
  };
  return new u.Agent({ ...agentOptions, connect });
}

/** The dispatcher for install({ http: true }): undefined when undici is not installed. */
export function optionalDispatcher(layer: AgentLayer): object | undefined {
  return loadUndici() === null ? undefined : dispatcher(layer);
}
