/**
 * Parking and taking connections for descriptor hand-off. A detached connection is parked either in this
 * process's table (native, shared by every worker thread: the registry owns the descriptor until an attach takes
 * it or the idle rule closes it) or with the local broker (other processes of the same app on this machine).
 */
import { randomBytes } from 'node:crypto';
import { closeSync } from 'node:fs';
import { statusError, systemError } from '../errors.js';
import { getLoop } from '../core/loop.js';
import { native } from '../core/native.js';
import type { HandoffSide } from '../service/port.js';
import { brokerPark, brokerTake } from './broker.js';
import { decodeToken, encodeToken, type ParkScope, type TokenBody } from './token.js';

let processKey: Buffer | undefined;

/** The token key of an app that gives none: random, one per process, the same in every worker thread. */
export function defaultKey(): Buffer {
  return (processKey ??= native().park_secret(randomBytes(32)));
}

/** What a detach hands to the park. */
export interface Departing {
  fd: number;
  unread: Buffer | null;
  family: 4 | 6;
  address: string;
  port: number;
  counters: [number, number, number, number];
}

/**
 * Parks `d` (the descriptor is the park's from here on, even on failure: it is closed then) and returns the token.
 */
export async function park(side: HandoffSide, d: Departing, scope: ParkScope): Promise<string> {
  const key = randomBytes(16).toString('hex');
  const appKey = side.key();
  const idle = side.idleTimeoutMs;
  if (scope === 'broker') {
    await brokerPark(key, d.fd, d.unread, idle, appKey);
  } else {
    const nat = getLoop().nat;
    const r = nat.park_put(key, d.fd, d.unread, idle);
    if (r < 0) {
      closeSync(d.fd);
      throw statusError(r, { syscall: 'detach', address: d.address, port: d.port });
    }
    if (idle > 0) {
      // The detaching layer's idle rule: the parked connection is closed once it has waited that long. The table
      // also closes expired entries itself, for a detaching thread that is gone by then.
      const timer = setTimeout(() => {
        if (nat.park_close(key) === 0) {
          side.parkedReclaimed({ address: d.address, port: d.port, bytesSent: d.counters[0], bytesReceived: d.counters[1] });
        }
      }, idle);
      timer.unref();
    }
  }
  const body: TokenBody = {
    app: side.appId,
    key,
    scope,
    pid: process.pid,
    family: d.family,
    type: 'tcp',
    address: d.address,
    port: d.port,
    counters: d.counters,
    unread: d.unread === null ? 0 : d.unread.length,
  };
  return encodeToken(appKey, body);
}

/** A token checked against this side's key and app: its body, or the EACCES error to report. */
export function verify(side: HandoffSide, token: string): TokenBody | Error {
  const body = decodeToken(side.key(), token);
  if (body === undefined) {
    return systemError('EACCES', { syscall: 'attach', detail: 'not a descriptor token signed with this app\'s key' });
  }
  if (body.app !== side.appId) {
    return systemError('EACCES', { syscall: 'attach', detail: `the descriptor belongs to another app` });
  }
  return body;
}

/** Takes the parked connection a verified token names; EPIPE when it is no longer parked. */
export function take(side: HandoffSide, body: TokenBody): { fd: number; unread: Buffer | null } | Error | Promise<{ fd: number; unread: Buffer | null }> {
  if (body.scope === 'broker') {
    return brokerTake(body.key, side.key());
  }
  if (body.pid !== process.pid) {
    return systemError('EPIPE', {
      syscall: 'attach',
      address: body.address,
      port: body.port,
      detail: `parked in process ${body.pid}: detach({ broker: true }) hands a connection to another process`,
    });
  }
  const r = getLoop().nat.park_take(body.key);
  if (typeof r === 'number') {
    return systemError('EPIPE', { syscall: 'attach', address: body.address, port: body.port, detail: 'already attached, closed or reclaimed' });
  }
  return { fd: r[0], unread: r[1] };
}
