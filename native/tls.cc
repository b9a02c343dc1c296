// TLS on a socket, inside the core. The socket's own queue is the TLS write side (a BIO whose write appends to
// it) and the kernel is its read side (a BIO whose read is recv on the descriptor): ciphertext never becomes a
// JS object. Records are framed as Node's TLS frames them: the first write of a turn is a record of its own and
// leaves at once (socket.cc), the turn's later writes become one record at the flush. This is what makes TLS over a
// sockguard socket as cheap as Node's own TLS over net, where the JS stream wrapper costs a copy, a Buffer and
// an event-loop turn per write.
//
// OpenSSL is not linked: its functions are looked up in the host process when TLS is first asked for. Node
// exports the OpenSSL it is built with; runtimes that do not (Bun, Deno) get "unavailable" and JS falls back to
// the runtime's tls module over the plain socket. The addon therefore has no undefined OpenSSL symbols.
#include "sg.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

namespace sg {
namespace {

// Plaintext beyond this is encrypted at once instead of waiting for the flush: it fills whole records anyway.
constexpr uint32_t kDirectWrite = 16 * 1024;

// Every OpenSSL function used, looked up by name. Macros of the headers (SSL_set_tlsext_host_name and friends)
// are spelled out as the ctrl calls they expand to.
#define SG_SSL_FUNCTIONS(X)                                                                                   \
  X(TLS_client_method)                                                                                       \
  X(SSL_CTX_new)                                                                                             \
  X(SSL_CTX_free)                                                                                            \
  X(SSL_CTX_ctrl)                                                                                            \
  X(SSL_CTX_set_verify)                                                                                      \
  X(SSL_CTX_get_cert_store)                                                                                  \
  X(SSL_CTX_set_cipher_list)                                                                                 \
  X(SSL_CTX_set_ciphersuites)                                                                                \
  X(SSL_CTX_set_options)                                                                                     \
  X(SSL_CTX_sess_set_new_cb)                                                                                 \
  X(SSL_CTX_use_certificate)                                                                                 \
  X(SSL_CTX_use_PrivateKey)                                                                                  \
  X(SSL_CTX_check_private_key)                                                                               \
  X(SSL_CTX_set_default_read_buffer_len)                                                                     \
  X(X509_STORE_add_cert)                                                                                     \
  X(PEM_read_bio_X509)                                                                                       \
  X(PEM_read_bio_PrivateKey)                                                                                 \
  X(X509_free)                                                                                               \
  X(EVP_PKEY_free)                                                                                           \
  X(BIO_new_mem_buf)                                                                                         \
  X(BIO_new)                                                                                                 \
  X(BIO_free)                                                                                                \
  X(BIO_meth_new)                                                                                            \
  X(BIO_meth_set_write)                                                                                      \
  X(BIO_meth_set_read)                                                                                       \
  X(BIO_meth_set_ctrl)                                                                                       \
  X(BIO_get_new_index)                                                                                       \
  X(BIO_set_data)                                                                                            \
  X(BIO_get_data)                                                                                            \
  X(BIO_set_init)                                                                                            \
  X(BIO_set_flags)                                                                                           \
  X(BIO_clear_flags)                                                                                         \
  X(SSL_new)                                                                                                 \
  X(SSL_free)                                                                                                \
  X(SSL_ctrl)                                                                                                \
  X(SSL_set_bio)                                                                                             \
  X(SSL_set_connect_state)                                                                                   \
  X(SSL_set_alpn_protos)                                                                                     \
  X(SSL_set_session)                                                                                         \
  X(SSL_set_read_ahead)                                                                                      \
  X(SSL_set_ex_data)                                                                                         \
  X(SSL_get_ex_data)                                                                                         \
  X(SSL_do_handshake)                                                                                        \
  X(SSL_read)                                                                                                \
  X(SSL_write)                                                                                               \
  X(SSL_shutdown)                                                                                            \
  X(SSL_get_error)                                                                                           \
  X(SSL_has_pending)                                                                                         \
  X(SSL_get_verify_result)                                                                                   \
  X(X509_verify_cert_error_string)                                                                           \
  X(SSL_get0_alpn_selected)                                                                                  \
  X(SSL_get_version)                                                                                         \
  X(SSL_get_current_cipher)                                                                                  \
  X(SSL_CIPHER_get_name)                                                                                     \
  X(SSL_CIPHER_standard_name)                                                                                \
  X(SSL_CIPHER_get_version)                                                                                  \
  X(SSL_session_reused)                                                                                      \
  X(SSL_get1_peer_certificate)                                                                               \
  X(SSL_get_peer_cert_chain)                                                                                 \
  X(OPENSSL_sk_num)                                                                                          \
  X(OPENSSL_sk_value)                                                                                        \
  X(i2d_X509)                                                                                                \
  X(SSL_get1_session)                                                                                        \
  X(i2d_SSL_SESSION)                                                                                         \
  X(d2i_SSL_SESSION)                                                                                         \
  X(SSL_SESSION_free)                                                                                        \
  X(ERR_get_error)                                                                                           \
  X(ERR_clear_error)                                                                                         \
  X(ERR_error_string_n)                                                                                      \
  X(ERR_lib_error_string)                                                                                    \
  X(ERR_reason_error_string)

struct ssl_api {
#define SG_DECLARE(name) decltype(&::name) name;
  SG_SSL_FUNCTIONS(SG_DECLARE)
#undef SG_DECLARE
};

ssl_api api;
bool api_ok = false;
BIO_METHOD* bio_method = nullptr;
std::once_flag api_once;

// Smallest free slab worth an SSL_read: one full record's plaintext.
constexpr uint32_t kTlsMinRead = 16 * 1024 + 256;
constexpr size_t kReadBudget = 1024 * 1024;
// OpenSSL's read-ahead buffer: one recv takes up to this much ciphertext (several records).
constexpr size_t kReadAhead = 64 * 1024;

socket* socket_of(BIO* b) { return static_cast<socket*>(api.BIO_get_data(b)); }

int bio_write(BIO* b, const char* data, int len) {
  api.BIO_clear_flags(b, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY);
  if (len <= 0) return 0;
  socket* s = socket_of(b);
  if (!s || !sg_queue_copy(s, data, static_cast<uint32_t>(len))) return -1;
  return len;
}

int bio_read(BIO* b, char* out, int len) {
  api.BIO_clear_flags(b, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY);
  socket* s = socket_of(b);
  if (!s || len <= 0) return 0;
  if (s->tls->drained) {
    api.BIO_set_flags(b, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY);
    return -1;
  }
  ssize_t n = sys_recv(s->fd, out, static_cast<size_t>(len));
  if (n > 0) {
    s->ctr[SG_CTR_BYTES_READ] += static_cast<uint64_t>(n);
    s->ctr[SG_CTR_RECV_CALLS]++;
    if (n < len) s->tls->drained = true;
    return static_cast<int>(n);
  }
  if (n == 0) {
    s->tls->eof = true;
    return 0;
  }
  if (n == -EAGAIN) {
    api.BIO_set_flags(b, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY);
    return -1;
  }
  s->tls->sys_err = static_cast<int>(n);
  return -1;
}

long bio_ctrl(BIO* b, int cmd, long num, void* ptr) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF: {
      socket* s = socket_of(b);
      return s && s->tls->eof ? 1 : 0;
    }
    default:
      return 0;
  }
}

int on_new_session(SSL* ssl, SSL_SESSION* sess);

void load_api() {
  bool ok = true;
#define SG_LOOKUP(name)                                                          \
  api.name = reinterpret_cast<decltype(&::name)>(dlsym(RTLD_DEFAULT, #name)); \
  if (!api.name) ok = false;
  SG_SSL_FUNCTIONS(SG_LOOKUP)
#undef SG_LOOKUP
  if (!ok) return;
  int idx = api.BIO_get_new_index();
  if (idx < 0) return;
  BIO_METHOD* m = api.BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "sockguard");
  if (!m) return;
  api.BIO_meth_set_write(m, bio_write);
  api.BIO_meth_set_read(m, bio_read);
  api.BIO_meth_set_ctrl(m, bio_ctrl);
  bio_method = m;
  api_ok = true;
}

// The first error on OpenSSL's queue, kept for JS (Node reports the same text, library and reason).
void capture(tls_conn* t) {
  unsigned long e = api.ERR_get_error();
  if (e == 0) {
    t->err[0] = t->err_lib[0] = t->err_reason[0] = 0;
    return;
  }
  api.ERR_error_string_n(e, t->err, sizeof(t->err));
  const char* lib = api.ERR_lib_error_string(e);
  const char* reason = api.ERR_reason_error_string(e);
  snprintf(t->err_lib, sizeof(t->err_lib), "%s", lib ? lib : "");
  snprintf(t->err_reason, sizeof(t->err_reason), "%s", reason ? reason : "");
  api.ERR_clear_error();
}

void set_err(tls_conn* t, const char* text) {
  snprintf(t->err, sizeof(t->err), "%s", text);
  t->err_lib[0] = t->err_reason[0] = 0;
}

// Reads PEM certificates into a store (the trusted roots) or, with `first`, hands back the first one.
int read_pem_certs(const char* pem, size_t len, X509_STORE* store, X509** first) {
  BIO* b = api.BIO_new_mem_buf(pem, static_cast<int>(len));
  if (!b) return -ENOMEM;
  int n = 0;
  while (X509* x = api.PEM_read_bio_X509(b, nullptr, nullptr, nullptr)) {
    if (store) {
      api.X509_STORE_add_cert(store, x);  // duplicates are refused harmlessly
      api.X509_free(x);
    } else if (first && !*first) {
      *first = x;
    } else {
      api.X509_free(x);
    }
    n++;
  }
  api.ERR_clear_error();  // the loop ends on a "no start line" error
  api.BIO_free(b);
  return n;
}

int pem_passphrase(char* buf, int size, int rwflag, void* u) {
  const char* p = static_cast<const char*>(u);
  if (!p) return 0;
  size_t n = strlen(p);
  if (n > static_cast<size_t>(size)) n = static_cast<size_t>(size);
  memcpy(buf, p, n);
  return static_cast<int>(n);
}

// Node's client completes the handshake whatever the chain's verdict and decides afterwards (rejectUnauthorized,
// checkServerIdentity), so that the result can also be reported rather than only refused; this does the same.
int accept_chain(int preverify, X509_STORE_CTX* ctx) { return 1; }

int on_new_session(SSL* ssl, SSL_SESSION* sess) {
  socket* s = static_cast<socket*>(api.SSL_get_ex_data(ssl, 0));
  if (!s || !s->tls) return 0;
  int len = api.i2d_SSL_SESSION(sess, nullptr);
  if (len <= 0) return 0;
  auto* der = static_cast<unsigned char*>(malloc(static_cast<size_t>(len)));
  if (!der) return 0;
  unsigned char* p = der;
  api.i2d_SSL_SESSION(sess, &p);
  free(s->tls->session);
  s->tls->session = der;
  s->tls->session_len = static_cast<uint32_t>(len);
  sg_loop_record(s->lp, s->id, SG_REC_SESSION, len, 0);
  return 0;  // the session is not kept here: JS holds its DER
}

void fail_tls(socket* s, int err, int32_t syscall) {
  sg_fail(s, err, syscall);
}

}  // namespace

bool sg_tls_available() {
  std::call_once(api_once, load_api);
  return api_ok;
}

void* sg_tls_context(const tls_ctx_args* a, char* err, size_t errlen) {
  if (!sg_tls_available()) {
    snprintf(err, errlen, "TLS is not available in this runtime");
    return nullptr;
  }
  api.ERR_clear_error();
  SSL_CTX* ctx = api.SSL_CTX_new(api.TLS_client_method());
  if (!ctx) {
    snprintf(err, errlen, "cannot create a TLS context");
    return nullptr;
  }
  auto bail = [&](const char* what) -> void* {
    unsigned long e = api.ERR_get_error();
    char detail[200] = "";
    if (e) api.ERR_error_string_n(e, detail, sizeof(detail));
    snprintf(err, errlen, "%s%s%s", what, detail[0] ? ": " : "", detail);
    api.ERR_clear_error();
    api.SSL_CTX_free(ctx);
    return nullptr;
  };
  api.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_chain);
  // A peer that closes without close_notify ends the stream as a FIN does with net, instead of failing it.
  api.SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  api.SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, nullptr);
  api.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE,
                   nullptr);
  api.SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  api.SSL_CTX_set_default_read_buffer_len(ctx, kReadAhead);
  if (a->min_version && !api.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, a->min_version, nullptr))
    return bail("unsupported minVersion");
  if (a->max_version && !api.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, a->max_version, nullptr))
    return bail("unsupported maxVersion");
  if (a->ciphers && a->ciphers[0] && !api.SSL_CTX_set_cipher_list(ctx, a->ciphers)) return bail("no cipher match");
  if (a->suites && a->suites[0] && !api.SSL_CTX_set_ciphersuites(ctx, a->suites)) return bail("no ciphersuite match");
  if (read_pem_certs(a->ca, a->ca_len, api.SSL_CTX_get_cert_store(ctx), nullptr) <= 0)
    return bail("no certificate in ca");
  if (a->cert) {
    BIO* b = api.BIO_new_mem_buf(a->cert, static_cast<int>(a->cert_len));
    X509* leaf = b ? api.PEM_read_bio_X509(b, nullptr, nullptr, nullptr) : nullptr;
    if (!leaf) {
      if (b) api.BIO_free(b);
      return bail("cannot read cert");
    }
    int ok = api.SSL_CTX_use_certificate(ctx, leaf);
    api.X509_free(leaf);
    // The rest of the PEM is the chain sent after the leaf.
    while (ok) {
      X509* x = api.PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
      if (!x) break;
      if (!api.SSL_CTX_ctrl(ctx, SSL_CTRL_EXTRA_CHAIN_CERT, 0, x)) {
        api.X509_free(x);
        ok = 0;
      }
    }
    api.ERR_clear_error();
    api.BIO_free(b);
    if (!ok) return bail("cannot use cert");
  }
  if (a->key) {
    BIO* b = api.BIO_new_mem_buf(a->key, static_cast<int>(a->key_len));
    EVP_PKEY* k = b ? api.PEM_read_bio_PrivateKey(b, nullptr, pem_passphrase, const_cast<char*>(a->passphrase))
                    : nullptr;
    if (b) api.BIO_free(b);
    if (!k) return bail("cannot read key");
    int ok = api.SSL_CTX_use_PrivateKey(ctx, k);
    api.EVP_PKEY_free(k);
    if (!ok || !api.SSL_CTX_check_private_key(ctx)) return bail("key does not match cert");
  }
  return ctx;
}

void sg_tls_context_free(void* ctx) {
  if (ctx && api_ok) api.SSL_CTX_free(static_cast<SSL_CTX*>(ctx));
}

int sg_tls_start(socket* s, void* ctx, const char* servername, const unsigned char* alpn, size_t alpn_len,
                 const unsigned char* session, size_t session_len) {
  if (!sg_tls_available()) return -ENOTSUP;
  if (s->tls || !(s->flags & SG_F_STREAM) || !(s->flags & (SG_F_CONNECTING | SG_F_CONNECTED))) return -EINVAL;
  // A connection that failed or is ending has no stream left to put TLS on.
  if (s->flags & (SG_F_FAILED | SG_F_SHUT_PENDING | SG_F_SHUT_DONE)) return -EINVAL;
  const bool upgrade = (s->flags & SG_F_CONNECTED) != 0;
  auto* t = static_cast<tls_conn*>(calloc(1, sizeof(tls_conn)));
  if (!t) return -ENOMEM;
  SSL* ssl = api.SSL_new(static_cast<SSL_CTX*>(ctx));
  BIO* bio = ssl ? api.BIO_new(bio_method) : nullptr;
  if (!bio) {
    if (ssl) api.SSL_free(ssl);
    free(t);
    api.ERR_clear_error();
    return -ENOMEM;
  }
  api.BIO_set_data(bio, s);
  api.BIO_set_init(bio, 1);
  // One BIO for both directions; the SSL owns it from here.
  api.SSL_set_bio(ssl, bio, bio);
  api.SSL_set_ex_data(ssl, 0, s);
  api.SSL_set_connect_state(ssl);
  api.SSL_set_read_ahead(ssl, 1);
  int r = 0;
  if (servername && servername[0] &&
      !api.SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(servername)))
    r = -EINVAL;
  // SSL_set_alpn_protos answers 0 on success.
  if (r == 0 && alpn && alpn_len && api.SSL_set_alpn_protos(ssl, alpn, static_cast<unsigned>(alpn_len)) != 0)
    r = -EINVAL;
  if (r == 0 && session && session_len) {
    const unsigned char* p = session;
    SSL_SESSION* sess = api.d2i_SSL_SESSION(nullptr, &p, static_cast<long>(session_len));
    // A session that cannot be read is ignored, as Node ignores one it cannot use: a full handshake follows.
    if (sess) {
      api.SSL_set_session(ssl, sess);
      api.SSL_SESSION_free(sess);
    }
  }
  api.ERR_clear_error();
  if (r < 0) {
    api.SSL_free(ssl);
    free(t);
    return r;
  }
  if (upgrade) {
    // STARTTLS: what the plain socket wrote (staged writes too) is queued as plaintext before the ClientHello
    // joins the queue, so the peer reads the plain bytes first and then the handshake.
    sg_loop_unstage(s->lp);
    if (s->flags & SG_F_FAILED) {
      api.SSL_free(ssl);
      free(t);
      return -EPIPE;
    }
  }
  t->ssl = ssl;
  s->tls = t;
  // Upgrading: the handshake starts now. Bytes the kernel holds from here on are the peer's TLS records; what
  // the plain socket already read stays with it.
  if (upgrade) sg_tls_connected(s);
  return 0;
}

void sg_tls_connected(socket* s) {
  s->flags |= SG_F_TLS_HS;
  sg_update_interest(s);
  sg_tls_handshake(s);
}

void sg_tls_handshake(socket* s) {
  tls_conn* t = s->tls;
  t->drained = false;
  api.ERR_clear_error();
  int r = api.SSL_do_handshake(t->ssl);
  if (r == 1) {
    s->flags &= ~SG_F_TLS_HS;
    sg_update_interest(s);
    sg_loop_record(s->lp, s->id, SG_REC_CONNECT, 0, 0);
    // Application data that came with the last handshake flight waits in OpenSSL, not in the kernel.
    if (api.SSL_has_pending(t->ssl)) {
      s->flags |= SG_F_TLS_AGAIN;
      if (!(s->flags & SG_F_DIRTY)) sg_loop_mark_dirty(s->lp, s);
    }
    return;
  }
  int e = api.SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  int err;
  if (e == SSL_ERROR_SSL) {
    capture(t);
    err = -EPROTO;
  } else if (t->sys_err) {
    set_err(t, "");
    err = t->sys_err;
  } else {
    set_err(t, "Client network socket disconnected before secure TLS connection was established");
    err = -ECONNRESET;
  }
  api.ERR_clear_error();
  s->flags &= ~SG_F_TLS_HS;
  s->flags |= SG_F_FAILED;
  s->flags &= ~(SG_F_WAIT_OUT | SG_F_WANT_DRAIN);
  sg_update_interest(s);
  sg_loop_record(s->lp, s->id, SG_REC_CONNECT, err, 1);
}

void sg_tls_read(socket* s) {
  loop* lp = s->lp;
  tls_conn* t = s->tls;
  // Called on readiness (or to finish what TLS already holds): the kernel may have more again.
  t->drained = false;
  s->flags &= ~SG_F_TLS_AGAIN;
  size_t budget = kReadBudget;
  bool stopped_early = false;
  while ((s->flags & SG_F_READING) && !(s->flags & (SG_F_EOF | SG_F_FAILED | SG_F_TLS_HS))) {
    uint32_t avail;
    uint8_t* dst = budget > 0 ? sg_loop_slab(lp, kTlsMinRead, &avail) : nullptr;
    if (!dst) {
      stopped_early = true;
      break;
    }
    uint32_t off = lp->slab_used;
    size_t want = avail < budget ? avail : budget;
    if (want > INT_MAX) want = INT_MAX;
    api.ERR_clear_error();
    int n = api.SSL_read(t->ssl, dst, static_cast<int>(want));
    if (n > 0) {
      sg_loop_commit_slab(lp, static_cast<uint32_t>(n));
      sg_loop_record(lp, s->id, SG_REC_DATA, static_cast<int32_t>(off), n);
      budget -= static_cast<size_t>(n);
      continue;
    }
    int e = api.SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && t->sys_err == 0)) {
      s->flags |= SG_F_EOF;
      sg_update_interest(s);
      sg_loop_record(lp, s->id, SG_REC_EOF, 0, 0);
      break;
    }
    if (e == SSL_ERROR_SSL) {
      capture(t);
      fail_tls(s, -EPROTO, SG_SYS_READ);
    } else {
      set_err(t, "");
      fail_tls(s, t->sys_err ? t->sys_err : -EIO, SG_SYS_READ);
    }
    break;
  }
  // Records already taken from the kernel are invisible to readiness: come back for them at the flush.
  if (stopped_early && (s->flags & SG_F_READING) && !(s->flags & (SG_F_EOF | SG_F_FAILED)) &&
      api.SSL_has_pending(t->ssl)) {
    s->flags |= SG_F_TLS_AGAIN;
    if (!(s->flags & SG_F_DIRTY)) sg_loop_mark_dirty(lp, s);
  }
}

bool sg_tls_has_pending(socket* s) { return s->tls && api.SSL_has_pending(s->tls->ssl) == 1; }

static int encrypt(socket* s, const char* p, uint32_t n) {
  tls_conn* t = s->tls;
  while (n > 0) {
    api.ERR_clear_error();
    int w = api.SSL_write(t->ssl, p, static_cast<int>(n > INT_MAX ? INT_MAX : n));
    if (w <= 0) {
      int e = api.SSL_get_error(t->ssl, w);
      if (e == SSL_ERROR_SSL) {
        capture(t);
        return -EPROTO;
      }
      set_err(t, "");
      return -ENOBUFS;
    }
    p += w;
    n -= static_cast<uint32_t>(w);
  }
  return 0;
}

int sg_tls_encrypt(socket* s) {
  tls_conn* t = s->tls;
  if (!t || t->plain_len == 0 || (s->flags & (SG_F_TLS_HS | SG_F_FAILED))) return 0;
  uint32_t n = t->plain_len;
  t->plain_len = 0;
  int r = encrypt(s, t->plain, n);
  // A large idle buffer goes back; a small one stays for the next burst.
  if (t->plain_cap > 64 * 1024) {
    free(t->plain);
    t->plain = nullptr;
    t->plain_cap = 0;
  }
  return r;
}

bool sg_tls_write(socket* s, const char* p, uint32_t n) {
  tls_conn* t = s->tls;
  // An empty piece (a corked batch may hold one) adds nothing; its pointer may be null.
  if (n == 0) return true;
  if (n >= kDirectWrite && !(s->flags & SG_F_TLS_HS)) {
    // Order: what waits goes first.
    if (sg_tls_encrypt(s) < 0) return false;
    return encrypt(s, p, n) == 0;
  }
  uint64_t need = static_cast<uint64_t>(t->plain_len) + n;
  if (need > UINT32_MAX / 2) return false;
  if (need > t->plain_cap) {
    uint32_t cap = t->plain_cap ? t->plain_cap : 4096;
    while (cap < need) cap *= 2;
    char* nb = static_cast<char*>(realloc(t->plain, cap));
    if (!nb) return false;
    t->plain = nb;
    t->plain_cap = cap;
  }
  memcpy(t->plain + t->plain_len, p, n);
  t->plain_len += n;
  return true;
}

void sg_tls_close_notify(socket* s) {
  tls_conn* t = s->tls;
  if (!t || (s->flags & (SG_F_TLS_HS | SG_F_FAILED))) return;
  sg_tls_encrypt(s);
  api.ERR_clear_error();
  api.SSL_shutdown(t->ssl);
  api.ERR_clear_error();
}

void sg_tls_free(socket* s) {
  tls_conn* t = s->tls;
  if (!t) return;
  s->tls = nullptr;
  // The BIO must not reach back into a socket that is going away.
  if (t->ssl) api.SSL_free(t->ssl);
  free(t->plain);
  free(t->session);
  free(t);
}

int sg_tls_verify_result(socket* s, const char** text) {
  long v = api.SSL_get_verify_result(s->tls->ssl);
  *text = api.X509_verify_cert_error_string(v);
  return static_cast<int>(v);
}

const unsigned char* sg_tls_alpn(socket* s, unsigned* len) {
  const unsigned char* p = nullptr;
  *len = 0;
  api.SSL_get0_alpn_selected(s->tls->ssl, &p, len);
  return *len ? p : nullptr;
}

const char* sg_tls_version(socket* s) { return api.SSL_get_version(s->tls->ssl); }

void sg_tls_cipher(socket* s, const char** name, const char** standard, const char** version) {
  const SSL_CIPHER* c = api.SSL_get_current_cipher(s->tls->ssl);
  *name = c ? api.SSL_CIPHER_get_name(c) : nullptr;
  *standard = c ? api.SSL_CIPHER_standard_name(c) : nullptr;
  *version = c ? api.SSL_CIPHER_get_version(c) : nullptr;
}

bool sg_tls_reused(socket* s) { return api.SSL_session_reused(s->tls->ssl) == 1; }

static int der_of(X509* x, unsigned char** der) {
  int len = api.i2d_X509(x, nullptr);
  if (len <= 0) return -1;
  *der = static_cast<unsigned char*>(malloc(static_cast<size_t>(len)));
  if (!*der) return -1;
  unsigned char* p = *der;
  api.i2d_X509(x, &p);
  return len;
}

int sg_tls_peer_cert(socket* s, int i, unsigned char** der) {
  SSL* ssl = s->tls->ssl;
  if (i == 0) {
    X509* x = api.SSL_get1_peer_certificate(ssl);
    if (!x) return -1;
    int len = der_of(x, der);
    api.X509_free(x);
    return len;
  }
  // The client's chain list starts with the peer's own certificate.
  auto* chain = reinterpret_cast<OPENSSL_STACK*>(api.SSL_get_peer_cert_chain(ssl));
  if (!chain || i >= api.OPENSSL_sk_num(chain)) return -1;
  return der_of(static_cast<X509*>(api.OPENSSL_sk_value(chain, i)), der);
}

int sg_tls_session_der(socket* s, unsigned char** der) {
  SSL_SESSION* sess = api.SSL_get1_session(s->tls->ssl);
  if (!sess) return -1;
  int len = api.i2d_SSL_SESSION(sess, nullptr);
  if (len > 0) {
    *der = static_cast<unsigned char*>(malloc(static_cast<size_t>(len)));
    if (*der) {
      unsigned char* p = *der;
      api.i2d_SSL_SESSION(sess, &p);
    } else {
      len = -1;
    }
  }
  api.SSL_SESSION_free(sess);
  return len;
}

}  // namespace sg
