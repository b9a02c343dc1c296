/**
 * layer.attach(token): the receiving half of descriptor hand-off. The token is checked at once; taking the parked
 * connection and resuming it happen after attach() returned, so the caller has attached its listeners by the time
 * 'connect' or 'error' comes.
 */
import { closeSync } from 'node:fs';
import { statusError } from '../errors.js';
import type { HandoffSide, LayerPort } from '../service/port.js';
import { RawState } from '../tcp/raw.js';
import type { Socket, StreamRaw } from '../tcp/socket.js';
import { take, verify } from './park.js';
import type { TokenBody } from './token.js';

export function attach(side: HandoffSide, port: LayerPort, socket: Socket, token: string): void {
  const raw = socket.raw as StreamRaw;
  port.admit(raw);
  raw.markStarted();
  const body = verify(side, token);
  if (body instanceof Error) {
    raw.fail(body);
    return;
  }
  process.nextTick(resume, side, raw, body);
}

function resume(side: HandoffSide, raw: StreamRaw, body: TokenBody): void {
  // Destroyed before it was resumed: the connection stays parked for the token's next use.
  if (!raw.pendingConnect) return;
  let got;
  try {
    got = take(side, body);
  } catch (err) {
    raw.fail(err as Error);
    return;
  }
  if (got instanceof Error) {
    raw.fail(got);
    return;
  }
  if (got instanceof Promise) {
    got.then(
      (g) => adopt(raw, body, g.fd, g.unread),
      (err: Error) => raw.fail(err),
    );
    return;
  }
  adopt(raw, body, got.fd, got.unread);
}

function adopt(raw: StreamRaw, body: TokenBody, fd: number, unread: Buffer | null): void {
  if (!raw.pendingConnect) {
    // Destroyed while the broker answered: the connection has no owner left.
    closeSync(fd);
    return;
  }
  const r = raw.resumeParked(fd, { address: body.address, family: body.family, port: body.port }, body.counters);
  if (r < 0) {
    closeSync(fd);
    raw.fail(statusError(r, { syscall: 'attach', address: body.address, port: body.port }));
    return;
  }
  if (unread !== null && unread.length > 0 && raw.state !== RawState.Closed) raw._deliver(unread);
}
