/**
 * The per-layer usage ledger behind `layer.usage()` (docs/service.md#usage-ledger). Socket traffic in both directions is
 * billed as outgoing bandwidth, so `billedBytes = bytesSent + bytesReceived`.
 *
 * Exactness: a socket's traffic is counted in exactly one place at any moment. While it is open, its own
 * counters are read live through the layer's iterator of open sockets; when it closes (ends, is destroyed,
 * reclaimed or detached), the layer removes it from the open set and calls {@link Ledger.fold} in the same
 * synchronous step, which adds its final counters to the closed totals. A snapshot therefore never double
 * counts or misses a byte, however many sockets close concurrently. Each layer owns its ledger, so two apps in
 * one process never mix.
 */

/** The per-socket counters the ledger reads (TCP `Socket`, raw socket and UDP socket all expose them). */
export interface MeteredSocket {
  readonly bytesWritten: number;
  readonly bytesRead: number;
  readonly sendCalls: number;
  readonly recvCalls: number;
  /**
   * Counters a socket started from when it was attached from a hand-off token ([written, read, sends, recvs]):
   * the layer that detached it already billed them, so this ledger counts only what came after.
   */
  readonly carried?: ArrayLike<number> | null;
}

/** `layer.usage()`. */
export interface Usage {
  appId: string;
  bytesSent: number;
  bytesReceived: number;
  /** `bytesSent + bytesReceived`. */
  billedBytes: number;
  socketsOpen: number;
  socketsCreated: number;
  /** Connections established (TCP connects and UDP `connect()`s that succeeded). */
  connects: number;
  /** Operations refused by the policy. */
  denied: number;
  /** Sockets closed by idle reclaim. */
  reclaimed: number;
  sendCalls: number;
  receiveCalls: number;
  /** Operations that failed with `ERR_SOCKGUARD_OVER_QUOTA`. */
  overQuota: number;
}

/**
 * Accumulates one layer's usage. Event counters are plain fields the layer increments; traffic comes from the
 * sockets themselves.
 */
export class Ledger {
  readonly appId: string;
  readonly #openSockets: () => Iterable<MeteredSocket>;

  socketsCreated = 0;
  connects = 0;
  denied = 0;
  reclaimed = 0;
  overQuota = 0;

  // Final counters of closed sockets.
  #bytesSent = 0;
  #bytesReceived = 0;
  #sendCalls = 0;
  #receiveCalls = 0;

  /** `openSockets` yields every socket of the layer that has not been folded yet. */
  constructor(appId: string, openSockets: () => Iterable<MeteredSocket>) {
    this.appId = appId;
    this.#openSockets = openSockets;
  }

  /**
   * Adds a closed socket's final counters. Call exactly once per socket, in the same synchronous step that
   * removes it from the open set.
   */
  fold(socket: MeteredSocket): void {
    const c = socket.carried;
    this.#bytesSent += socket.bytesWritten - (c ? c[0]! : 0);
    this.#bytesReceived += socket.bytesRead - (c ? c[1]! : 0);
    this.#sendCalls += socket.sendCalls - (c ? c[2]! : 0);
    this.#receiveCalls += socket.recvCalls - (c ? c[3]! : 0);
  }

  usage(): Usage {
    let bytesSent = this.#bytesSent;
    let bytesReceived = this.#bytesReceived;
    let sendCalls = this.#sendCalls;
    let receiveCalls = this.#receiveCalls;
    let socketsOpen = 0;
    for (const s of this.#openSockets()) {
      socketsOpen++;
      const c = s.carried;
      bytesSent += s.bytesWritten - (c ? c[0]! : 0);
      bytesReceived += s.bytesRead - (c ? c[1]! : 0);
      sendCalls += s.sendCalls - (c ? c[2]! : 0);
      receiveCalls += s.recvCalls - (c ? c[3]! : 0);
    }
    return {
      appId: this.appId,
      bytesSent,
      bytesReceived,
      billedBytes: bytesSent + bytesReceived,
      socketsOpen,
      socketsCreated: this.socketsCreated,
      connects: this.connects,
      denied: this.denied,
      reclaimed: this.reclaimed,
      sendCalls,
      receiveCalls,
      overQuota: this.overQuota,
    };
  }
}
