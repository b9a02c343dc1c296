/**
 * Loop#retarget, the record routing under a TLS upgrade (STARTTLS): a socket that changes hands while its records
 * are being dispatched keeps getting the rest of that batch (plaintext read before the upgrade), and its new
 * client gets everything after; a socket closed during the batch is not handed to anyone.
 */
import { expect, test } from 'vitest';
import { Loop, type LoopClient } from '../../src/core/loop.js';
import { LAYOUT, REC_DATA, REC_EOF, native, type NativeBinding } from '../../src/core/native.js';

native(); // the layout comes from the addon
const fakeNat = { loop_init: () => 0, loop_add_chunk: () => 1, loop_flush() {}, socket_flush() {} } as unknown as NativeBinding;

function client(name: string, log: string[], onData?: () => void): LoopClient {
  const noop = () => {};
  return {
    _onConnect: noop, _onDgram: noop, _onError: noop, _onDrain: noop, _onShutdown: noop, _onSession: noop,
    _onData: (_s, _o, length) => {
      log.push(`${name} data ${length}`);
      onData?.();
    },
    _onEof: () => log.push(`${name} eof`),
  };
}

function run(loop: Loop, records: Array<[number, number, number, number]>): void {
  records.forEach((r, i) => loop.records.set(r, i * LAYOUT.recInts));
  (loop as unknown as { dispatch(n: number): void }).dispatch(records.length);
}

test('the rest of the batch goes to the previous client, later batches to the new one', () => {
  const loop = new Loop(fakeNat, 'uv');
  const log: string[] = [];
  let upgraded = false;
  const tlsClient = client('tls', log);
  const plain: LoopClient = client('plain', log, () => {
    if (upgraded) return;
    upgraded = true;
    loop.retarget(id, plain, tlsClient);
  });
  const id = loop.open(plain);
  run(loop, [[id, REC_DATA, 0, 5], [id, REC_DATA, 5, 7], [id, REC_EOF, 0, 0]]);
  expect(log).toEqual(['plain data 5', 'plain data 7', 'plain eof']);
  run(loop, [[id, REC_DATA, 0, 9]]);
  expect(log.at(-1)).toBe('tls data 9');
  // Outside a dispatch the change is immediate.
  loop.retarget(id, tlsClient, plain);
  run(loop, [[id, REC_DATA, 0, 1]]);
  expect(log.at(-1)).toBe('plain data 1');
});

test('a socket released during the batch is not handed on (its id may be promised to another)', () => {
  const loop = new Loop(fakeNat, 'uv');
  const log: string[] = [];
  const tlsClient = client('tls', log);
  const plain: LoopClient = client('plain', log, () => {
    loop.retarget(id, plain, tlsClient);
    loop.release(id);
  });
  const id = loop.open(plain);
  run(loop, [[id, REC_DATA, 0, 3]]);
  const other = client('other', log);
  expect(loop.open(other)).toBe(id);
  run(loop, [[id, REC_DATA, 0, 4]]);
  expect(log).toEqual(['plain data 3', 'other data 4']);
});
