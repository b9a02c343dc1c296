import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Ledger, type MeteredSocket } from '../../src/service/ledger.js';

class FakeSocket implements MeteredSocket {
  bytesWritten = 0;
  bytesRead = 0;
  sendCalls = 0;
  recvCalls = 0;
}

/** The layer's side of the contract: an open set, removed from and folded in the same step. */
function layer(appId = 'app') {
  const open = new Set<FakeSocket>();
  const ledger = new Ledger(appId, () => open.values());
  return {
    ledger,
    open,
    create(): FakeSocket {
      const s = new FakeSocket();
      open.add(s);
      ledger.socketsCreated++;
      return s;
    },
    close(s: FakeSocket): void {
      if (open.delete(s)) ledger.fold(s);
    },
  };
}

describe('Ledger', () => {
  it('starts at zero with the app id', () => {
    expect(layer('mail-relay').ledger.usage()).toEqual({
      appId: 'mail-relay', bytesSent: 0, bytesReceived: 0, billedBytes: 0, socketsOpen: 0, socketsCreated: 0,
      connects: 0, denied: 0, reclaimed: 0, sendCalls: 0, receiveCalls: 0, overQuota: 0,
    });
  });

  it('reads open sockets live and bills both directions', () => {
    const l = layer();
    const a = l.create();
    const b = l.create();
    a.bytesWritten = 100;
    a.sendCalls = 2;
    b.bytesRead = 50;
    b.recvCalls = 1;
    expect(l.ledger.usage()).toMatchObject({ bytesSent: 100, bytesReceived: 50, billedBytes: 150, socketsOpen: 2, socketsCreated: 2, sendCalls: 2, receiveCalls: 1 });
    a.bytesWritten += 1;
    expect(l.ledger.usage().billedBytes).toBe(151);
  });

  it('keeps closed sockets’ final counters exactly once', () => {
    const l = layer();
    const a = l.create();
    a.bytesWritten = 7;
    a.bytesRead = 3;
    a.sendCalls = 1;
    a.recvCalls = 2;
    l.close(a);
    l.close(a); // closing again (e.g. destroy after reclaim) must not double count
    a.bytesWritten = 1_000; // a closed socket's later changes are not the ledger's
    expect(l.ledger.usage()).toMatchObject({ bytesSent: 7, bytesReceived: 3, billedBytes: 10, socketsOpen: 0, socketsCreated: 1, sendCalls: 1, receiveCalls: 2 });
  });

  it('counts events the layer records', () => {
    const { ledger } = layer();
    ledger.connects += 3;
    ledger.denied += 2;
    ledger.reclaimed += 1;
    ledger.overQuota += 4;
    expect(ledger.usage()).toMatchObject({ connects: 3, denied: 2, reclaimed: 1, overQuota: 4 });
  });

  it('keeps layers apart', () => {
    const a = layer('a');
    const b = layer('b');
    a.create().bytesWritten = 5;
    b.create().bytesRead = 9;
    expect(a.ledger.usage()).toMatchObject({ appId: 'a', billedBytes: 5, socketsOpen: 1 });
    expect(b.ledger.usage()).toMatchObject({ appId: 'b', billedBytes: 9, socketsOpen: 1 });
  });

  it('is exact at every point of any interleaving of traffic and closes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            op: fc.constantFrom('create', 'send', 'recv', 'close'),
            pick: fc.nat(),
            n: fc.integer({ min: 0, max: 70_000 }),
          }),
          { maxLength: 200 },
        ),
        (steps) => {
          const l = layer();
          const all: FakeSocket[] = [];
          let sent = 0;
          let received = 0;
          let sends = 0;
          let recvs = 0;
          for (const { op, pick, n } of steps) {
            if (op === 'create' || all.length === 0) {
              all.push(l.create());
              continue;
            }
            const s = all[pick % all.length]!;
            const open = l.open.has(s);
            if (op === 'send' && open) {
              s.bytesWritten += n;
              s.sendCalls++;
              sent += n;
              sends++;
            } else if (op === 'recv' && open) {
              s.bytesRead += n;
              s.recvCalls++;
              received += n;
              recvs++;
            } else if (op === 'close') {
              l.close(s);
            }
            const u = l.ledger.usage();
            expect(u).toMatchObject({ bytesSent: sent, bytesReceived: received, billedBytes: sent + received, sendCalls: sends, receiveCalls: recvs, socketsOpen: l.open.size, socketsCreated: all.length });
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
