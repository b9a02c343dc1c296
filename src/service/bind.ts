/**
 * The service's bind rule (docs/service.md#binding): a socket may ask for the any-address and port 0 — which
 * changes nothing — and nothing else. TCP (`localAddress`/`localPort`) and UDP (`bind()`) share it.
 */
import { describeValue, systemError } from '../errors.js';

/** The any-address in each spelling a caller may use ('' is dgram's and net's "unspecified"). */
export function isAnyAddress(a: unknown): boolean {
  return a === '' || a === '0.0.0.0' || a === '::' || a === '0:0:0:0:0:0:0:0';
}

/**
 * The EACCES error for a bind the service refuses, or undefined when it is allowed. `address`/`port` undefined
 * or null mean "not asked for"; `anyAddress` names the address in the error when only a port was asked for.
 */
export function bindRefusal(address: unknown, port: unknown, anyAddress = '0.0.0.0'): Error | undefined {
  if (address !== undefined && address !== null && !isAnyAddress(address)) {
    return systemError('EACCES', {
      syscall: 'bind',
      address: typeof address === 'string' ? address : describeValue(address),
      port: typeof port === 'number' ? port : 0,
      detail: 'binding to a specific address is not allowed',
    });
  }
  if (port !== undefined && port !== null && port !== 0) {
    return systemError('EACCES', {
      syscall: 'bind',
      address: typeof address === 'string' && address !== '' ? address : anyAddress,
      port: typeof port === 'number' ? port : undefined,
      detail: 'binding to a specific port is not allowed',
    });
  }
  return undefined;
}
