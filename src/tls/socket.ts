/**
 * TlsSocket: a sockguard Socket with TLS run by the native core, presenting tls.TLSSocket's surface
 * ('secureConnect', 'session', authorized, getPeerCertificate(), alpnProtocol, getSession(), ...).
 *
 * The core completes the handshake whatever the certificate's verdict; this file then decides as Node's
 * tls.connect does: the chain's verdict first, then checkServerIdentity (skipped for a resumed session), and with
 * rejectUnauthorized the socket fails with that error instead of emitting 'secureConnect'. Until then the
 * socket is `connecting` and writes wait in JS, so no plaintext leaves before the peer is known.
 *
 * A TlsSocket can also continue a plain sockguard socket's connection (STARTTLS, `upgrade()`): its raw socket
 * takes over the plain one's native socket, TLS starts on it, and the plain socket stays behind as the TLS
 * socket's underlying socket, as with tls.connect({ socket }): it reads and writes nothing more of its own, and
 * closes after the TLS socket.
 */
import { X509Certificate } from 'node:crypto';
import type tls from 'node:tls';
import { codedError, systemError } from '../errors.js';
import { getLoop, type Loop } from '../core/loop.js';
import { Socket, StreamRaw, touchIdle } from '../tcp/socket.js';
import { kOver } from '../tcp/symbols.js';
import { RAW_F_NO_STAGE } from '../tcp/raw.js';
import type { SocketOptions } from '../tcp/args.js';
import type { TlsParams } from './context.js';

/** OpenSSL's X509_V_ERR_* numbers and the names Node gives them as error codes. */
const VERIFY_CODES: Record<number, string> = {
  2: 'UNABLE_TO_GET_ISSUER_CERT',
  3: 'UNABLE_TO_GET_CRL',
  4: 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  5: 'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  6: 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  7: 'CERT_SIGNATURE_FAILURE',
  8: 'CRL_SIGNATURE_FAILURE',
  9: 'CERT_NOT_YET_VALID',
  10: 'CERT_HAS_EXPIRED',
  11: 'CRL_NOT_YET_VALID',
  12: 'CRL_HAS_EXPIRED',
  13: 'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  14: 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  15: 'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  16: 'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  17: 'OUT_OF_MEM',
  18: 'DEPTH_ZERO_SELF_SIGNED_CERT',
  19: 'SELF_SIGNED_CERT_IN_CHAIN',
  20: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  21: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  22: 'CERT_CHAIN_TOO_LONG',
  23: 'CERT_REVOKED',
  24: 'INVALID_CA',
  25: 'PATH_LENGTH_EXCEEDED',
  26: 'INVALID_PURPOSE',
  27: 'CERT_UNTRUSTED',
  28: 'CERT_REJECTED',
  62: 'HOSTNAME_MISMATCH',
};

interface Negotiated {
  alpn: string | false;
  version: string;
  cipher: { name: string; standardName: string; version: string };
  reused: boolean;
  /** The peer's certificate (DER), kept so it can still be read after the socket closes. */
  leaf: Buffer | null;
}

/** The raw socket of a TlsSocket: puts TLS on the native socket and judges the peer once the handshake is done. */
class TlsRaw extends StreamRaw {
  constructor(readonly params: TlsParams) {
    super();
    this.flags |= RAW_F_NO_STAGE;
  }

  get t(): TlsSocket {
    return this.owner as TlsSocket;
  }

  protected override startNative(loop: Loop, id: number): number {
    const p = this.params;
    return loop.nat.tls_start(id, p.context, p.sni, p.alpn, p.session, this.highWaterMark);
  }

  override _onConnect(status: number, tlsFailed = 0): void {
    if (status < 0 && tlsFailed === 1) {
      this.destroy(this.tlsError(status));
      return;
    }
    if (status === 0) {
      const refused = this.judge();
      if (refused !== null) {
        this.destroy(refused);
        return;
      }
    }
    super._onConnect(status, tlsFailed);
  }

  protected override emitData(slab: Buffer, offset: number, length: number): void {
    const under = this.t._under;
    if (under !== undefined) touchIdle(under);
    super.emitData(slab, offset, length);
  }

  override _onError(status: number, syscall: number): void {
    const info = this.id >= 0 ? getLoop().nat.tls_error(this.id) : null;
    if (info !== null && info[0] !== '') this.destroy(this.tlsError(status));
    else super._onError(status, syscall);
  }

  override _onSession(): void {
    const s = this.t;
    const session = getLoop().nat.tls_session(this.id);
    if (session === null) return;
    s._session = session;
    if (!s.destroyed) s.emit('session', session);
  }

  /** The error of a failed handshake or record: OpenSSL's text, library and reason, as Node reports them. */
  private tlsError(status: number): Error {
    const info = this.id >= 0 ? getLoop().nat.tls_error(this.id) : null;
    const address = this.remoteAddress;
    const port = this.remotePort;
    if (info === null || info[0] === '') {
      const err = systemError(status === -104 ? 'ECONNRESET' : 'EPROTO', { syscall: 'connect', address, port });
      if (info === null && status === -104) err.message = 'Client network socket disconnected before secure TLS connection was established';
      return err;
    }
    const [text, library, reason] = info;
    if (library === '') {
      const err = systemError(status === -104 ? 'ECONNRESET' : 'EPROTO', { syscall: 'connect', address, port });
      if (text !== '') err.message = text;
      return err;
    }
    const tag = reason.toUpperCase().replace(/[^A-Z0-9]+/g, '_');
    const err = codedError(Error, library === 'SSL routines' ? `ERR_SSL_${tag}` : `ERR_OSSL_${tag}`, text) as Error & {
      library?: string;
      reason?: string;
    };
    err.library = library;
    err.reason = reason;
    return err;
  }

  /** Node's verdict after the handshake: null to go on, or the error to fail with (rejectUnauthorized). */
  private judge(): Error | null {
    const nat = getLoop().nat;
    const info = nat.tls_info(this.id);
    if (typeof info === 'number') return systemError('EPROTO', { syscall: 'connect', address: this.remoteAddress, port: this.remotePort });
    const [code, text, alpn, version, name, standardName, cipherVersion, reused] = info;
    const s = this.t;
    s._negotiated = { alpn, version, cipher: { name, standardName, version: cipherVersion }, reused, leaf: nat.tls_peer_cert(this.id, 0) };
    s.alpnProtocol = alpn;
    let verifyError: Error | undefined;
    if (code !== 0) {
      verifyError = codedError(Error, VERIFY_CODES[code] ?? 'UNSPECIFIED', text);
    } else if (!reused) {
      const cert = s.getPeerCertificate(true);
      verifyError = this.params.checkServerIdentity(this.params.hostname, cert as tls.PeerCertificate) ?? undefined;
    }
    if (verifyError) {
      s.authorized = false;
      s.authorizationError = ((verifyError as NodeJS.ErrnoException).code ?? verifyError.message) as Error['message'];
      if (this.params.rejectUnauthorized) return verifyError;
    } else {
      s.authorized = true;
    }
    return null;
  }
}

export class TlsSocket extends Socket {
  /** As tls.TLSSocket: always true. */
  readonly encrypted = true;
  /** Whether the peer's certificate verified and matched the name. */
  authorized = false;
  /** Why it did not (a verify code such as 'DEPTH_ZERO_SELF_SIGNED_CERT', or the identity error's code). */
  authorizationError: string | undefined = undefined;
  /** The protocol ALPN selected, or false. */
  alpnProtocol: string | false = false;
  /** @internal */ _negotiated: Negotiated | undefined = undefined;
  /** @internal the latest session the server issued */ _session: Buffer | undefined = undefined;
  /** @internal the plain socket this one upgraded (STARTTLS), which closes after it */
  _under: Socket | undefined = undefined;
  #certs: tls.DetailedPeerCertificate | undefined;

  /**
   * STARTTLS on `plain`, a sockguard Socket that is connected (TLS starts now) or still connecting (TLS starts
   * once it is connected). The caller has checked that nothing of the plain socket's own is in the way (see
   * layer.upgradeTls). undefined when the core refuses the connection; nothing has changed then.
   */
  static upgrade(plain: Socket, options: SocketOptions, params: TlsParams): TlsSocket | undefined {
    const s = new TlsSocket({ ...options, layer: { port: plain.raw.port } }, params);
    const raw = s.raw as TlsRaw;
    const from = plain.raw;
    if (!plain.connecting) {
      if (raw.takeOver(from) < 0) return undefined;
    } else {
      raw.markStarted();
      // First among the plain socket's 'connect' listeners: its connection is TLS before anyone else hears of it.
      plain.prependOnceListener('connect', () => {
        if (s.destroyed) return;
        const r = raw.takeOver(from);
        if (r < 0) s.destroy(systemError(r === -22 ? 'EPIPE' : 'EPROTO', { syscall: 'connect', address: from.remoteAddress, port: from.remotePort }));
      });
    }
    s._under = plain;
    plain[kOver] = s;
    // An error of the socket underneath (a connect that failed) reaches the TLS socket with its destroy (Socket's
    // _destroy): it is the TLS socket's to report, as over net, not an unhandled 'error' of the plain socket.
    plain.on('error', ignore);
    return s;
  }

  /** @internal made by the layer's connect({ tls }) */
  constructor(options: SocketOptions, params: TlsParams) {
    const raw = new TlsRaw(params);
    const mark = options.layer?.port.tlsHighWaterMark;
    super({ ...options, writableHighWaterMark: options.writableHighWaterMark ?? mark }, raw);
    if (mark !== undefined) raw.highWaterMark = mark;
  }

  /** The name the certificate was checked against (and sent as SNI when it is not an IP address). */
  get servername(): string {
    return (this.raw as TlsRaw).params.hostname;
  }

  /** @internal the handshake is done and the peer accepted: 'connect', then 'secureConnect' */
  override _connected(): void {
    // A TLS socket over a socket that was already connected reports only the handshake, as tls.connect({ socket }).
    if (this._under === undefined) super._connected();
    this.emit('secureConnect');
  }

  override write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    const under = this._under;
    if (under !== undefined) touchIdle(under);
    return super.write(chunk, encoding, cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    super._destroy(err, cb);
    // The socket underneath closes after this one, as a net socket under Node's TLS does.
    const under = this._under;
    if (under !== undefined && !under.destroyed) under.destroy();
  }

  /**
   * The peer's certificate as tls.TLSSocket#getPeerCertificate answers it; with `detailed`, each certificate
   * links its issuer (`issuerCertificate`) up the chain the peer sent. An empty object before the handshake.
   */
  getPeerCertificate(detailed?: boolean): tls.PeerCertificate | tls.DetailedPeerCertificate | Record<string, never> {
    const leaf = this._negotiated?.leaf;
    if (!leaf) return {};
    if (!detailed) return legacy(leaf);
    if (this.#certs) return this.#certs;
    const first = legacy(leaf) as tls.DetailedPeerCertificate;
    const raw = this.raw;
    let last = first;
    if (raw.id >= 0) {
      const nat = getLoop().nat;
      // The chain as sent starts with the leaf again.
      for (let i = 1; i < 16; i++) {
        const der = nat.tls_peer_cert(raw.id, i);
        if (der === null) break;
        const next = legacy(der) as tls.DetailedPeerCertificate;
        last.issuerCertificate = next;
        last = next;
      }
    }
    if (last.issuerCertificate === undefined && last.issuer && last.subject && sameName(last.issuer, last.subject)) last.issuerCertificate = last;
    this.#certs = first;
    return first;
  }

  /** The peer's certificate as an X509Certificate, or undefined. */
  getPeerX509Certificate(): X509Certificate | undefined {
    const leaf = this._negotiated?.leaf;
    return leaf ? new X509Certificate(leaf) : undefined;
  }

  /** 'TLSv1.3', 'TLSv1.2', ... or null before the handshake. */
  getProtocol(): string | null {
    return this._negotiated?.version ?? null;
  }

  getCipher(): { name: string; standardName: string; version: string } | undefined {
    return this._negotiated?.cipher;
  }

  isSessionReused(): boolean {
    return this._negotiated?.reused ?? false;
  }

  /** The session to resume with (pass it as `tls.session` on the next connect), or undefined. */
  getSession(): Buffer | undefined {
    const raw = this.raw;
    if (raw.id >= 0 && this._negotiated) {
      const s = getLoop().nat.tls_session(raw.id);
      if (s !== null) return s;
    }
    return this._session;
  }

  /** Node's TLS ticket accessor: the ticket is inside the session here (see getSession()). */
  getTLSTicket(): undefined {
    return undefined;
  }
}

function ignore(): void {}

function legacy(der: Buffer): tls.PeerCertificate {
  return (new X509Certificate(der) as X509Certificate & { toLegacyObject(): tls.PeerCertificate }).toLegacyObject();
}

function sameName(a: object, b: object): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (JSON.stringify((a as Record<string, unknown>)[k]) !== JSON.stringify((b as Record<string, unknown>)[k])) return false;
  return true;
}
