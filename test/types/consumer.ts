/**
 * A consumer's file: compiled (strict, NodeNext) against the built declarations as an installed package exposes
 * them (`import ... from 'sockguard'`), it holds the README's examples, so they stay valid TypeScript.
 */
import http from 'node:http';
import {
  SocketLayer,
  codes,
  connect,
  constants,
  createSocket,
  formatMetrics,
  OverQuotaError,
  SockguardError,
  SockguardSystemError,
  type PolicyObject,
  type QuotasOption,
  type SockguardCode,
  type SocketError,
  type UpgradeTlsOptions,
  type Usage,
  type Verdict,
} from 'sockguard';

export async function readme(): Promise<void> {
  const layer = new SocketLayer({ appId: 'mail-relay' });

  const socket = layer.connect({ host: 'smtp.example.com', port: 587 });
  socket.on('connect', () => socket.write('EHLO relay\r\n'));
  socket.on('data', (d) => console.log(d.toString()));
  socket.on('error', (err) => console.error(err.code, err.rule));

  const verdict: Verdict = await layer.check('169.254.169.254', 80);
  if (!verdict.allowed) console.log(verdict.rule, verdict.reason);
  const usage: Usage = layer.usage();
  console.log(usage.billedBytes, usage.overQuota);
}

export function dropIn(): void {
  const layer = new SocketLayer({ appId: 'tenant-42' });
  const uninstall = layer.install({ http: true, listen: 'deny' });
  uninstall();
  http.get({ host: 'example.com', agent: layer.httpAgent() });
  void fetch('https://example.com/', { dispatcher: layer.dispatcher() } as RequestInit);
  const plain = connect(80, 'example.com');
  plain.once('error', (err) => console.log(err.code, err.errno, err.syscall));
}

export function tlsExample(layer: SocketLayer): void {
  const s = layer.connect({ host: 'example.com', port: 443, tls: { ALPNProtocols: ['http/1.1'] } }, () => {
    console.log(s.authorized, s.alpnProtocol, s.getProtocol());
    s.end('GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n');
  });
}

/** STARTTLS: the server's go-ahead arrives on the plain socket, the rest of the connection is TLS. */
export function startTlsExample(layer: SocketLayer): void {
  const plain = layer.connect({ host: 'smtp.example.com', port: 587 });
  const options: UpgradeTlsOptions = { servername: 'smtp.example.com' };
  plain.once('data', () => {
    const secure = layer.upgradeTls(plain, options, () => secure.write('EHLO client.example.com\r\n'));
    secure.on('data', (d: Buffer) => console.log(d.toString()));
  });
  plain.write('STARTTLS\r\n');
}

export function udpAndOptions(layer: SocketLayer): void {
  const udp = layer.createSocket('udp4');
  udp.on('error', (err) => console.log(err.code, err.rule));
  udp.send(Buffer.from('query'), 53, '8.8.8.8');
  const other = createSocket('udp6');
  other.close();

  const s = layer.connect(443, 'example.com');
  const sndbuf = s.getsockopt(constants.SOL_SOCKET, constants.SO_SNDBUF);
  s.setsockopt(constants.SOL_TCP, constants.TCP_NODELAY, 1);
  console.log(sndbuf, s.reclaimed, s.counters.bytesSent);
}

export function options(): SocketLayer[] {
  const quotas: QuotasOption = { perMinute: { connects: 100 }, perDay: { bytesSent: 1 << 30 } };
  const document: PolicyObject = {
    version: 1,
    allow: [{ cidr: '127.0.0.0/8', openSpecialPurpose: true }],
    deny: ['203.0.114.0/24', { cidr: '198.51.0.0/16', rule: 'corp', reason: 'our office network' }],
    deniedPorts: [23],
  };
  return [
    new SocketLayer({ policy: 'development', quotas: 'app-engine' }),
    new SocketLayer({ policy: document, quotas, idleTimeoutMs: 0, sockopts: 'native' }),
    new SocketLayer({ policy: '/etc/sockguard/policy.json', highWaterMark: 1 << 20 }),
  ];
}

export function errors(err: SocketError): string {
  const code: SockguardCode = codes.OVER_QUOTA;
  if (err.code === code) {
    const over = err as OverQuotaError;
    return `${over.resource} per ${over.window}: ${over.limit}`;
  }
  return err.rule ?? err.code;
}

export function readmeErrors(layer: SocketLayer): void {
  const socket = layer.connect({ host: 'example.com', port: 443 });
  socket.on('error', (err) => {
    if (err instanceof OverQuotaError) console.error(`over quota: ${err.resource} per ${err.window}`);
    else if (err instanceof SockguardSystemError && err.rule) console.error(`denied by ${err.rule}`);
    else if (err instanceof SockguardError) console.error(err.code);
  });
}

export function errorClasses(err: unknown): string {
  if (err instanceof OverQuotaError) return `${err.resource} per ${err.window}: ${err.limit}`;
  if (err instanceof SockguardError) return err.code satisfies SockguardCode;
  if (err instanceof SockguardSystemError) return `${err.syscall} ${err.code} ${err.errno} ${err.rule ?? ''}`;
  return String(err);
}

export function operators(layer: SocketLayer): string {
  const stop = layer.observe();
  stop();
  return layer.metrics() + formatMetrics([layer.usage()]);
}

export async function fleet(): Promise<number> {
  const layer = new SocketLayer({ appId: 'mail-relay', quotas: 'app-engine', store: 'redis://10.0.0.5:6379/0', storeFailure: 'open', storeFlushMs: 1000 });
  const total: Usage = await layer.fleetUsage();
  await layer.close();
  return total.billedBytes;
}

export function notPublic(layer: SocketLayer): void {
  // @ts-expect-error the key is not readable from the layer
  console.log(layer.secret);
  // @ts-expect-error internals are not part of the declarations
  console.log(layer.ledger);
}
