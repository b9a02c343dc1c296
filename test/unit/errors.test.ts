/**
 * The error classes a user can test with instanceof, met the way users meet them: from real connects, quotas
 * and option checks, not built by hand.
 */
import net from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { OverQuotaError, SockguardError, SockguardSystemError, SocketLayer, codes } from '../../src/index.js';
import { errorOf, freePort } from '../helpers.js';

let layer: SocketLayer;
beforeAll(() => {
  layer = new SocketLayer({ appId: 'errors', policy: 'development' });
});
afterAll(() => layer.close());

test('a refused connect is a SockguardSystemError with Node fields, not a library error', async () => {
  const port = await freePort();
  const err = await errorOf(layer.connect(port, '127.0.0.1'));
  expect(err).toBeInstanceOf(SockguardSystemError);
  expect(err).toBeInstanceOf(Error);
  expect(err instanceof SockguardError).toBe(false);
  expect(err).toMatchObject({ code: 'ECONNREFUSED', errno: -111, syscall: 'connect', address: '127.0.0.1', port });
});

test('a policy denial is a SockguardSystemError carrying its rule', async () => {
  const prod = new SocketLayer({ appId: 'errors-prod' });
  try {
    const err = await errorOf(prod.connect(9, '127.0.0.1'));
    expect(err).toBeInstanceOf(SockguardSystemError);
    expect(err).toMatchObject({ code: 'EACCES', rule: 'loopback' });
  } finally {
    prod.close();
  }
});

test('over quota is an OverQuotaError, which is a SockguardError', async () => {
  const server = net.createServer((c) => c.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const limited = new SocketLayer({ appId: 'errors-quota', policy: 'development', quotas: { perMinute: { connects: 1 } } });
  try {
    const first = limited.connect(port, '127.0.0.1');
    await new Promise((r) => first.once('connect', r));
    first.destroy();
    const err = await errorOf(limited.connect(port, '127.0.0.1'));
    expect(err).toBeInstanceOf(OverQuotaError);
    expect(err).toBeInstanceOf(SockguardError);
    expect(err).toMatchObject({ code: codes.OVER_QUOTA, resource: 'connects', window: 'minute', limit: 1 });
  } finally {
    limited.close();
    server.close();
  }
});

test('option errors keep their built-in class and are SockguardErrors by their code; Node-coded errors are not', () => {
  let thrown: unknown;
  try {
    new SocketLayer({ appId: 'x', policy: 'developement' });
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(Error);
  expect((thrown as { code: string }).code).toBe(codes.INVALID_POLICY);
  expect(thrown instanceof SockguardError).toBe(true);
  expect(thrown instanceof OverQuotaError).toBe(false);

  let portError: unknown;
  try {
    layer.connect({ port: 'not a port' as never, host: '127.0.0.1' });
  } catch (e) {
    portError = e;
  }
  expect(portError).toBeInstanceOf(RangeError);
  expect((portError as { code: string }).code).toBe(codes.INVALID_PORT);
  expect(portError instanceof SockguardError).toBe(true);
  const udp = layer.createSocket('udp4');
  udp.bind(0);
  let rebind: unknown;
  try {
    udp.bind(0);
  } catch (e) {
    rebind = e;
  }
  udp.close();
  expect((rebind as { code: string }).code).toBe('ERR_SOCKET_ALREADY_BOUND');
  expect(rebind instanceof SockguardError).toBe(false);
  const plain = Object.assign(new Error('x'), { code: 'ERR_SOMETHING_ELSE' });
  expect(plain instanceof SockguardError).toBe(false);
  expect({ code: codes.LAYER_CLOSED } instanceof SockguardError).toBe(false);
});

test('a closed layer throws a SockguardError', () => {
  const l = new SocketLayer({ appId: 'closed' });
  l.close();
  let thrown: unknown;
  try {
    l.connect(1, '127.0.0.1');
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(SockguardError);
  expect(Object.getPrototypeOf(thrown)).toBe(SockguardError.prototype);
  expect((thrown as SockguardError).code).toBe(codes.LAYER_CLOSED);
});
