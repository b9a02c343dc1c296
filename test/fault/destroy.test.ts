/**
 * destroy() in every state a socket can be in. Each time: 'close' exactly once, no 'error' (destroy() without
 * an argument is not a failure), no uncaught exception, and the process's descriptors back to where they were.
 * net.Socket goes through the same states in the same test, and both must emit the same events in the same
 * order.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import net from 'node:net';
import { SocketLayer, type Socket } from '../../src/index.js';
import { blackhole, fdCount, once, until } from '../helpers.js';
import { cleanup, closed, fdsBackTo, peer, record, settle, warmLoop, type FaultPeer, type Log } from './util.js';

type AnySocket = Socket | net.Socket;
type Make = (o: { port: number; host?: string; allowHalfOpen?: boolean; lookup?: net.LookupFunction }) => AnySocket;

let layer: SocketLayer;
let makers: Array<[string, Make]>;

beforeAll(async () => {
  layer = new SocketLayer({ policy: 'development', idleTimeoutMs: 0 });
  // The thread's native loop opens its poll descriptor once; let that happen before any baseline is taken.
  await warmLoop(layer);
  makers = [
    ['net', (o) => net.connect({ host: '127.0.0.1', ...o } as net.NetConnectOpts)],
    ['sockguard', (o) => layer.connect({ host: '127.0.0.1', ...o })],
  ];
});

afterAll(() => layer.close());

interface Outcome {
  log: Log;
  uncaught: unknown[];
}

/**
 * For net and sockguard in turn: `into` brings a fresh socket into the state (recording its events from the
 * start), then `finish` (default: destroy()) ends it. Returns both outcomes; asserts the common contract.
 */
async function destroyIn(
  peers: FaultPeer[],
  into: (make: Make) => Promise<{ s: AnySocket; log: Log }>,
  finish: (s: AnySocket) => void = (s) => s.destroy(),
): Promise<Record<string, Outcome>> {
  const baseline = fdCount();
  const out: Record<string, Outcome> = {};
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  cleanup(() => process.removeListener('uncaughtException', onUncaught));
  for (const [name, make] of makers) {
    uncaught.length = 0;
    const { s, log } = await into(make);
    finish(s);
    await closed(s);
    await settle();
    out[name] = { log, uncaught: [...uncaught] };
    expect(log.closes, `${name}: 'close' events`).toBe(1);
    expect(uncaught, `${name}: uncaught exceptions`).toEqual([]);
  }
  for (const p of peers) await p.dropAll();
  await fdsBackTo(baseline);
  return out;
}

function noErrors(out: Record<string, Outcome>) {
  for (const [name, o] of Object.entries(out)) expect(o.log.errors, `${name}: errors`).toEqual([]);
}

function sameEvents(out: Record<string, Outcome>) {
  expect(out.sockguard!.log.events).toEqual(out.net!.log.events);
}

describe('destroy() in every state', () => {
  test('pending: while the host name is being resolved (nothing is connected afterwards)', async () => {
    const p = await peer(() => {});
    let answered = 0;
    // A resolver that answers late: the socket is destroyed before the answer, which must then be ignored.
    const lookup = ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) => {
      setTimeout(() => {
        answered++;
        if (opts && opts.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
        else cb(null, '127.0.0.1', 4);
      }, 50);
    }) as unknown as net.LookupFunction;
    const out = await destroyIn([p], async (make) => {
      const s = make({ host: 'fault.example', port: p.port, lookup });
      const log = record(s);
      expect(s.connecting).toBe(true);
      return { s, log };
    });
    await until(() => answered === 2, 5000, 'both late answers');
    await settle();
    expect(p.accepted).toBe(0);
    noErrors(out);
    sameEvents(out);
  });

  test('connecting: SYN sent, no answer yet', async () => {
    const hole = await blackhole();
    cleanup(() => hole.close());
    const out = await destroyIn([], async (make) => {
      const s = make({ port: hole.port });
      const log = record(s);
      // Give the connect call time to reach the kernel (the SYN is then sent, and never answered).
      await new Promise((r) => setTimeout(r, 30));
      expect(s.connecting).toBe(true);
      return { s, log };
    });
    noErrors(out);
    sameEvents(out);
  });

  test('open', async () => {
    const p = await peer((c) => c.resume());
    const out = await destroyIn([p], async (make) => {
      const s = make({ port: p.port });
      const log = record(s);
      await once(s, 'connect');
      return { s, log };
    });
    noErrors(out);
    sameEvents(out);
  });

  test('ending: end() called with bytes still queued (the peer does not read)', async () => {
    const p = await peer((c) => c.pause());
    const out = await destroyIn([p], async (make) => {
      const s = make({ port: p.port });
      const log = record(s);
      await once(s, 'connect');
      s.write(Buffer.alloc(16 * 1024 * 1024, 1));
      s.end();
      await settle();
      expect(s.writableFinished).toBe(false);
      return { s, log };
    });
    noErrors(out);
    sameEvents(out);
  });

  test("after end(): 'finish' emitted, the peer has not ended its side", async () => {
    const p = await peer((c) => c.resume(), { allowHalfOpen: true });
    const out = await destroyIn([p], async (make) => {
      const s = make({ port: p.port });
      const log = record(s);
      await once(s, 'connect');
      s.end('bye');
      await once(s, 'finish');
      expect(s.destroyed).toBe(false);
      return { s, log };
    });
    noErrors(out);
    sameEvents(out);
  });

  test("after the peer's FIN (allowHalfOpen: 'end' emitted, still writable)", async () => {
    const p = await peer((c) => {
      c.resume();
      c.end();
    }, { allowHalfOpen: true });
    const out = await destroyIn([p], async (make) => {
      const s = make({ port: p.port, allowHalfOpen: true });
      const log = record(s);
      s.resume();
      await once(s, 'end');
      expect(s.destroyed).toBe(false);
      expect(s.writable).toBe(true);
      return { s, log };
    });
    noErrors(out);
    sameEvents(out);
  });

  test('already destroyed: a second destroy(), even with an error, changes nothing', async () => {
    const p = await peer((c) => c.resume());
    const out = await destroyIn(
      [p],
      async (make) => {
        const s = make({ port: p.port });
        const log = record(s);
        await once(s, 'connect');
        return { s, log };
      },
      (s) => {
        s.destroy();
        s.destroy();
        s.destroy(new Error('too late to matter'));
      },
    );
    noErrors(out);
    sameEvents(out);
  });

  test('after close: destroy() is a no-op', async () => {
    const p = await peer((c) => c.resume());
    const out = await destroyIn([p], async (make) => {
      const s = make({ port: p.port });
      const log = record(s);
      await once(s, 'connect');
      s.destroy();
      await closed(s);
      return { s, log };
    });
    noErrors(out);
    sameEvents(out);
  });

  test("destroy(err) on an open socket: 'error' with that error, then close(hadError)", async () => {
    const p = await peer((c) => c.resume());
    const errs: Record<string, Error> = {};
    const out = await destroyIn(
      [p],
      async (make) => {
        const s = make({ port: p.port });
        const log = record(s);
        await once(s, 'connect');
        return { s, log };
      },
      (s) => {
        const e = new Error('application abort');
        errs[s instanceof net.Socket ? 'net' : 'sockguard'] = e;
        s.destroy(e);
      },
    );
    for (const name of ['net', 'sockguard']) {
      expect(out[name]!.log.errors).toEqual([errs[name]]);
      expect(out[name]!.log.events.slice(-2)).toEqual(['error:undefined', 'close:true']);
    }
    sameEvents(out);
  });
});
