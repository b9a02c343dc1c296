/**
 * The layer port: the one interface through which every transport (TCP raw socket, Duplex, UDP socket) reaches
 * the layer that governs it — admission, activity, release, vetting, connecting, socket-option mode, quotas.
 *
 * Transports import this module, never the layer itself, so the import graph stays acyclic: the layer
 * implements the port and registers the default layer's port here (see `provideDefaultPort`).
 */
import { codedError, codes } from '../errors.js';
import type { MeteredSocket } from './ledger.js';
import { NO_QUOTA, type QuotaMeter, type QuotaResource } from './quota.js';
import type { ReclaimNode } from './reclaim.js';
import type { SockoptMode } from './sockopts.js';

/** A vetted destination address. */
export interface Candidate {
  address: string;
  family: 4 | 6;
}

/**
 * What the layer tracks for its ledger, reclaim sweep and close(). Counters are read live while open and folded
 * into the ledger once, when the entry is released.
 */
export interface LayerEntry extends MeteredSocket, ReclaimNode {
  reclaimed: boolean;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number;
  /**
   * @internal true when the entry is not idle although no operation refreshed it: bytes are queued, or its kernel counters
   * moved since the previous call. A sweep asks before it reclaims.
   */
  _busy(): boolean;
  /** @internal closes for idle reclaim: no 'error', only 'close'. */
  _reclaimClose(): void;
  /** @internal closes for layer.close(); resolves once the user-facing object has emitted 'close'. */
  _layerClose(): Promise<void>;
}

/** A TCP endpoint the layer connects: it resolves and vets, then hands over the candidates. */
export interface ConnectClient extends LayerEntry {
  /** @internal the layer took the endpoint into a connection attempt: it reports `connecting`. */
  markStarted(): void;
  /** @internal still waiting for resolution and policy (nothing native yet). */
  readonly pendingConnect: boolean;
  /** Fails the attempt before any native work (policy denial, resolution failure, timeout, quota). */
  fail(err: Error): void;
  /** Connects to the first reachable of `candidates`, in order. */
  connect(candidates: Candidate[], port: number): void;
  /** @internal bounds the whole attempt, resolution included: ETIMEDOUT when `ms` passes. */
  startConnectTimer(ms: number): void;
  /** @internal the name was resolved: `'lookup'` for the Duplex. */
  resolved(address: string, family: 4 | 6, host: string): void;
}

/** A TCP connect request, validated by the layer before anything is admitted. */
export interface ConnectRequest {
  host?: unknown;
  port?: unknown;
  family?: unknown;
  localAddress?: unknown;
  localPort?: unknown;
  connectTimeout?: unknown;
  lookup?: unknown;
}

/**
 * A connect request after validation: nothing can fail synchronously once this exists. `P` is what the layer
 * keeps for itself (the parsed target, the resolver); transports only pass it back.
 */
export interface ValidatedConnect<P = unknown> {
  readonly port: number;
  readonly family: 0 | 4 | 6;
  readonly connectTimeout: number;
  /** Set when the request is refused before any I/O (a bind the service does not allow). */
  readonly refused: Error | undefined;
  /** @internal the layer's own part, opaque to transports */
  readonly plan: P;
}

/** What descriptor hand-off needs of a layer (service/../handoff). */
export interface HandoffSide {
  readonly appId: string;
  /** Parked connections of this layer are closed after this long without an attach; 0 never. */
  readonly idleTimeoutMs: number;
  /** The key that signs and checks this app's tokens. */
  key(): Buffer;
  /** A connection this layer parked was closed by the idle rule before anyone attached it. */
  parkedReclaimed(info: { address: string; port: number; bytesSent: number; bytesReceived: number }): void;
}

export interface LayerPort<P = unknown> {
  readonly appId: string;
  /** Descriptor hand-off; undefined for an endpoint of no layer. */
  readonly handoff: HandoffSide | undefined;
  readonly sockopts: SockoptMode;
  readonly quota: QuotaMeter;
  /** Bytes queued natively per TCP socket before write() returns false. */
  readonly highWaterMark: number;
  /** The same for a socket with TLS in the core (plaintext not yet encrypted plus records not yet sent). */
  readonly tlsHighWaterMark: number;
  /** Starts tracking (ledger, reclaim); counts a socket creation. Throws ERR_SOCKGUARD_LAYER_CLOSED when closed. */
  admit(entry: LayerEntry): void;
  /** Operation on the entry: refreshes its reclaim deadline. O(1), no allocation. */
  touch(entry: LayerEntry): void;
  /** Stops tracking and folds the entry's final counters into the ledger. Idempotent. */
  release(entry: LayerEntry): void;
  /**
   * `to` takes `from`'s place (TLS started on a connected socket: the same connection under a new object): tracked
   * instead of it, nothing folded and no socket creation counted. A no-op when `from` is not tracked.
   */
  transfer(from: LayerEntry, to: LayerEntry): void;
  /** An operation was refused over quota (ledger count). */
  overQuota(): void;
  /** A connection was established (ledger count; TCP connects are counted by the layer itself). */
  connected(): void;
  /** Vets one destination: resolves names once, returns the first allowed address or rejects with EACCES. */
  vet(host: string, port: number, family: 0 | 4 | 6, syscall: string): Candidate | Promise<Candidate>;
  /** Validates a TCP connect request; throws a coded error and admits nothing when it is invalid. */
  validateConnect(request: ConnectRequest): ValidatedConnect<P>;
  /** Admits `client` and starts the validated connection: resolve once, vet every address, connect. */
  connect(client: ConnectClient, request: ValidatedConnect<P>): void;
}

function noLayer(): never {
  throw codedError(Error, codes.LAYER_CLOSED, 'The socket belongs to no layer');
}

/** The port of an endpoint that belongs to no layer (a standalone raw socket): nothing tracked, no quotas. */
export const NO_PORT: LayerPort = Object.freeze({
  appId: '',
  handoff: undefined,
  sockopts: 'emulate' as SockoptMode,
  quota: NO_QUOTA,
  highWaterMark: 1024 * 1024,
  tlsHighWaterMark: 64 * 1024,
  admit() {},
  touch() {},
  release() {},
  transfer() {},
  overQuota() {},
  connected() {},
  vet: noLayer,
  validateConnect: noLayer,
  connect: noLayer,
});

/**
 * Charges one quota resource on behalf of an endpoint: null when allowed (and charged), the over-quota error
 * when refused (nothing charged, the ledger's refusal count raised).
 */
export function chargeQuota(port: LayerPort, resource: QuotaResource, amount = 1): Error | null {
  const q = port.quota;
  if (!q.enabled) return null;
  const over = q.check(resource, amount);
  if (over !== null) {
    counted(port, over);
    return over;
  }
  q.charge(resource, amount);
  return null;
}

/** Charges a send (one call and its bytes): null when allowed, the over-quota error when refused. */
export function chargeSend(port: LayerPort, bytes: number): Error | null {
  try {
    port.quota.chargeSend(bytes);
    return null;
  } catch (err) {
    counted(port, err as Error);
    return err as Error;
  }
}

/** Records received bytes (billed whatever happens): null, or the over-quota error once past the limit. */
export function recordReceive(port: LayerPort, bytes: number): Error | null {
  const over = port.quota.recordReceive(bytes);
  if (over !== null) counted(port, over);
  return over;
}

/** The ledger's overQuota counts quota refusals; a closed-mode refusal of an unreachable store is not one. */
function counted(port: LayerPort, err: Error): void {
  if ((err as Error & { code?: string }).code !== codes.STORE_UNAVAILABLE) port.overQuota();
}

let defaultPortProvider: (() => LayerPort) | undefined;

/** The layer module registers how the default layer is found (it is built lazily, on first use). */
export function provideDefaultPort(provider: () => LayerPort): void {
  defaultPortProvider = provider;
}

/** The default layer's port, for sockets created without a layer (`new Socket().connect()`). */
export function defaultPort(): LayerPort {
  if (defaultPortProvider === undefined) throw codedError(Error, codes.LAYER_CLOSED, 'No default layer');
  return defaultPortProvider();
}
