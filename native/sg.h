// sockguard native core.
//
// Layers, bottom up (each file knows only the ones below it):
//   sys.cc          syscalls: return >= 0 or a negative errno, EINTR retried in place
//   poll_*.cc       one readiness backend (epoll on Linux, kqueue on macOS/BSD) behind sg_poll_*
//   socket.cc       per-socket operations: connect, queue/flush writes, drain reads, shutdown, close
//   tls.cc          optional TLS on a socket: OpenSSL (the one the host runtime exports, found at run time)
//                   between the socket's queue and the kernel, so encrypted bytes never cross into JS
//   park.cc         parked connections (descriptor hand-off): a process-wide table every thread can take from
//   pass.cc         descriptors across processes: SCM_RIGHTS over a Unix socket, peer credentials checked
//   loop.cc         one loop per N-API environment: the poll set, the shared receive slab, the event records
//                   and the JS dispatch, driven by one of two backends chosen when the loop is created:
//                     uv      (Node's default) uv handles on the environment's libuv loop watch the set and
//                             settle the loop once per turn
//                     thread  (Bun, Deno, or on demand) poll_thread.cc: a helper thread blocks until the set is
//                             ready and wakes JS through a threadsafe function; JS schedules the per-turn settle.
//                             No uv_* function is ever called, so runtimes without a usable libuv can embed it
//   poll_thread.cc  the thread backend's helper thread, its wake-up and its teardown
//   binding.cc      N-API glue only: converts types, never decides
//
// The core knows nothing about policy, quotas or reclaim: those are decisions and live in src/.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <node_api.h>
#include <uv.h>

#include <vector>

struct ssl_st;  // OpenSSL's SSL, only ever handled by tls.cc

namespace sg {

// ---------------------------------------------------------------------------------------------------------
// syscalls (sys.cc)

// Non-blocking, close-on-exec socket of `type` (SOCK_STREAM / SOCK_DGRAM) for AF_INET/AF_INET6. fd or -errno.
int sys_socket(int family, int type);
// 0 when connected at once, -EINPROGRESS when pending, else -errno.
int sys_connect(int fd, const struct sockaddr* sa, socklen_t len);
int sys_bind(int fd, const struct sockaddr* sa, socklen_t len);
// Dissolves a datagram socket's association (connect to AF_UNSPEC); keeps its local address.
int sys_disconnect(int fd);
// Bytes written (may be short), -EAGAIN when the socket buffer is full, else -errno. Never raises SIGPIPE.
ssize_t sys_writev(int fd, const struct iovec* iov, int iovcnt);
ssize_t sys_sendto(int fd, const void* buf, size_t len, const struct sockaddr* sa, socklen_t salen);
// Bytes read, 0 at end of stream, -EAGAIN when nothing is ready, else -errno.
ssize_t sys_recv(int fd, void* buf, size_t len);
ssize_t sys_recvfrom(int fd, void* buf, size_t len, struct sockaddr_storage* from, socklen_t* fromlen);
// The socket's pending error as -errno, or 0.
int sys_so_error(int fd);
int sys_shutdown_wr(int fd);
void sys_close(int fd);
int sys_setsockopt_int(int fd, int level, int name, int value);
int sys_getsockopt_int(int fd, int level, int name, int* value);
int sys_set_linger(int fd, int onoff, int seconds);
int sys_get_linger(int fd, int* onoff, int* seconds);
int sys_set_keepalive(int fd, int on, int idle_seconds);
// Fills `ss` from a numeric address; -EINVAL when `ip` is not a literal of `family`.
int sys_make_addr(int family, const char* ip, int port, struct sockaddr_storage* ss, socklen_t* len);
// Local (peer=0) or remote (peer=1) address of fd.
int sys_name(int fd, int peer, struct sockaddr_storage* ss, socklen_t* len);
// Numeric text of an address; returns family (4/6) and fills ip (>= 46 bytes) and port.
int sys_addr_text(const struct sockaddr_storage* ss, char* ip, size_t iplen, int* port);
// The type (SOCK_STREAM/SOCK_DGRAM) and family of an existing fd, or -errno (for adopting a parked fd).
int sys_describe(int fd, int* type, int* family);
int sys_set_nonblock(int fd);

// ---------------------------------------------------------------------------------------------------------
// readiness backend (poll_epoll.cc / poll_kqueue.cc)

enum : uint32_t {
  SG_IN = 1u << 0,
  SG_OUT = 1u << 1,
  SG_ERR = 1u << 2,
  SG_HUP = 1u << 3,
};

struct poll_event {
  uint64_t token;  // what was registered: (generation << 32) | socket id
  uint32_t flags;  // SG_* bits
};

int sg_poll_create();
// Registers fd with `interest` (SG_IN|SG_OUT, may be 0). Idempotent interest changes go through sg_poll_mod.
int sg_poll_add(int pfd, int fd, uint32_t interest, uint64_t token);
int sg_poll_mod(int pfd, int fd, uint32_t old_interest, uint32_t interest, uint64_t token);
int sg_poll_del(int pfd, int fd, uint32_t old_interest);
// Never blocks: the outer libuv loop (or the helper thread) already told us the set is ready. Returns the number
// of events.
int sg_poll_wait(int pfd, poll_event* out, int max);

// ---------------------------------------------------------------------------------------------------------
// Everything below that JS must agree with is exported by binding.cc's layout() and read from there by
// src/core/native.ts: these definitions are the only copy.
//
// Bumped whenever a record, counter or staging layout changes (or what the JS Loop expects of the addon), so a
// second copy of the JS side sharing this thread's loop can tell whether it speaks the same format.
constexpr uint32_t SG_LAYOUT_VERSION = 4;

// Loop backends (loop_init's `backend`).
enum : int32_t {
  SG_BACKEND_UV = 0,
  SG_BACKEND_THREAD = 1,
};

// event records shared with JS (loop.cc writes, src/core/loop.ts reads)
//
// Int32Array of SG_REC_CAP records, SG_REC_INTS x int32 each: [id, type, a, b].
//   DATA      a = slab offset, b = length
//   DGRAM     a = slab offset of a 20-byte address header, b = payload length (payload follows the header)
//             header: u8 family (4|6), u8 0, u16 port (host order), 16 bytes address (v4 uses the first 4)
//   EOF       peer finished sending
//   ERROR     a = -errno, b = syscall (SG_SYS_*)
//   CONNECT   a = 0 or -errno; b = 1 when a TLS handshake failed (tls_error() tells why)
//             (a TLS socket reports CONNECT once its handshake is complete, not when TCP is up)
//   DRAIN     the write queue became empty after write() reported it above the high-water mark
//   SHUTDOWN  a = 0 or -errno: the queued bytes are flushed and SHUT_WR has been sent
//   SESSION   a TLS session (ticket) arrived: tls_session() returns it
enum : int32_t {
  SG_REC_DATA = 1,
  SG_REC_DGRAM = 2,
  SG_REC_EOF = 3,
  SG_REC_ERROR = 4,
  SG_REC_CONNECT = 5,
  SG_REC_DRAIN = 6,
  SG_REC_SHUTDOWN = 7,
  SG_REC_SESSION = 8,
};

enum : int32_t {
  SG_SYS_READ = 1,
  SG_SYS_WRITE = 2,
  SG_SYS_CONNECT = 3,
  SG_SYS_SHUTDOWN = 4,
};

// Syscall names for JS, indexed by SG_SYS_*.
constexpr const char* SG_SYS_NAMES[] = {"", "read", "write", "connect", "shutdown"};

constexpr uint32_t SG_REC_INTS = 4;
constexpr uint32_t SG_REC_CAP = 4096;
// Records kept free before a socket is handed an event; a socket appends at most a few per event.
constexpr uint32_t SG_REC_MARGIN = 256;
constexpr uint32_t SG_DGRAM_HDR = 20;
// The receive slab must hold at least this much (two full reads of the loop's per-read minimum).
constexpr uint32_t SG_SLAB_MARGIN = 64 * 1024;
constexpr uint32_t SG_SLAB_MIN = 2 * SG_SLAB_MARGIN;

// Per-socket counters: SG_CTR_SLOTS x uint64 in a JS-owned ArrayBuffer (chunk of SG_CHUNK sockets), so JS reads
// them through a typed-array view without a native call.
enum : uint32_t {
  SG_CTR_BYTES_WRITTEN = 0,  // bytes accepted by the kernel
  SG_CTR_BYTES_READ = 1,     // bytes read from the kernel
  SG_CTR_SEND_CALLS = 2,     // write/send syscalls
  SG_CTR_RECV_CALLS = 3,     // read/recv syscalls that returned data
  SG_CTR_PENDING = 4,        // bytes queued natively, not yet accepted by the kernel
  SG_CTR_STAGED = 5,         // bytes JS staged for this socket that the loop has not taken yet (JS adds)
  SG_CTR_SLOTS = 6,
};
constexpr uint32_t SG_CHUNK = 1024;

// Small writes staged by JS without a native call (src/core/loop.ts `stage`): a shared byte slab and an
// Int32Array [count, used, then count x (id, offset, length)]. The loop takes them, in order, into the sockets'
// queues before every flush and before any native operation that depends on queue order.
constexpr uint32_t SG_STAGE_HDR = 2;
constexpr uint32_t SG_STAGE_INTS = 3;

// Limits of the JS boundary (binding.cc rejects anything beyond them before any effect).
// Buffers in one socket_writev call: bounds the glue's iovec array (16 B each, so 1 MiB at most).
constexpr uint32_t SG_WRITEV_MAX = 64 * 1024;
// Longest address text accepted: an IPv6 literal (45) plus a zone id (IF_NAMESIZE 16) and change.
constexpr uint32_t SG_IP_MAX = 63;
// SO_LINGER crosses as one int: SG_LINGER_OFF turns lingering off, 0..SG_LINGER_MAX turns it on with that many
// seconds. The bound keeps the value far from int overflow in the kernel's jiffies conversion; no real linger
// time comes near it.
constexpr int32_t SG_LINGER_OFF = -1;
constexpr int32_t SG_LINGER_MAX = 65535;

// ---------------------------------------------------------------------------------------------------------
// sockets (socket.cc)

enum : uint32_t {
  SG_F_STREAM = 1u << 0,       // TCP; otherwise UDP
  SG_F_CONNECTING = 1u << 1,
  SG_F_CONNECTED = 1u << 2,
  SG_F_READING = 1u << 3,      // JS wants reads (not paused)
  SG_F_DIRTY = 1u << 4,        // queued in the loop's flush list
  SG_F_WAIT_OUT = 1u << 5,     // kernel buffer full: wait for writability instead of flushing per turn
  SG_F_WANT_DRAIN = 1u << 6,
  SG_F_SHUT_PENDING = 1u << 7,
  SG_F_SHUT_DONE = 1u << 8,
  SG_F_EOF = 1u << 9,
  SG_F_FAILED = 1u << 10,      // an error was reported; no further I/O
  SG_F_DIRECT = 1u << 11,      // watched by the loop's direct uv_poll_t instead of the poll set
  SG_F_LINGER = 1u << 12,      // SO_LINGER may be on with a timeout: close() would block, so sg_close defuses it
  SG_F_TLS_HS = 1u << 13,      // TCP is up and the TLS handshake is running
  SG_F_TLS_AGAIN = 1u << 14,   // TLS holds decrypted-ready bytes the kernel will not signal: read them at flush
};

struct tls_conn;

struct loop;

// One piece of a socket's write queue: own bytes copied into wbuf (ptr == nullptr, at wbuf + off), or a large
// caller buffer held by reference (ref) until the kernel has taken it.
struct wseg {
  const char* ptr;
  uint32_t len;
  uint32_t off;
  napi_ref ref;
};

struct socket {
  int fd;
  uint32_t id;
  uint32_t gen;
  uint32_t flags;
  uint32_t interest;  // what is currently watched (SG_IN|SG_OUT); 0 = not watched at all
  uint32_t hwm;       // write queue high-water mark
  uint64_t* ctr;      // SG_CTR_SLOTS counters
  loop* lp;
  // Write queue: segments [shead, stail) of segs, `pend` bytes in all. Small writes are copied into wbuf and
  // leave together; large ones are held, not copied, and leave in the same sendmsg.
  wseg* segs;
  uint32_t scap;
  uint32_t shead;
  uint32_t stail;
  uint32_t wcap;
  uint32_t wlen;
  uint32_t pend;
  char* wbuf;
  tls_conn* tls;  // null for plain sockets
};

static_assert(sizeof(socket) <= 128, "native socket must stay small");

// Whether `id` may name a new socket: it must be covered by a counter chunk. The glue checks it first.
bool sg_loop_id_ok(const loop* lp, uint32_t id);

// Creates a TCP socket and starts a non-blocking connect. Returns the socket, or nullptr with *err = -errno.
socket* sg_tcp_connect(loop* lp, uint32_t id, int family, const char* ip, int port, uint32_t hwm, int* err);
// Creates an unconnected UDP socket registered for reads.
socket* sg_udp_open(loop* lp, uint32_t id, int family, int* err);
// Adopts an already connected fd (a parked connection) into this loop.
socket* sg_adopt(loop* lp, uint32_t id, int fd, uint32_t hwm, int* err);

// Queues bytes: copied when small, held by reference to holders[i] (the JS buffer) when large. They leave
// with the loop's flush at the end of the turn. Returns bytes pending (>= 0) or -errno.
int64_t sg_write(socket* s, const struct iovec* iov, const napi_value* holders, int iovcnt);
// Bytes queued and not yet taken by the kernel.
uint32_t sg_pending(const socket* s);
ssize_t sg_udp_send(socket* s, const void* buf, size_t len, const char* ip, int port, int family);
// Flushes the queue; safe to call on any socket. Appends ERROR/DRAIN/SHUTDOWN records as needed.
void sg_flush(socket* s);
// For a write made while the socket had nothing queued: takes the staged writes and sends the queue now instead
// of at the end of the turn, unless the socket is already in the turn's flush list (it sent early once this turn,
// or waits for writability or a shutdown). A request written while nothing else waits goes on the wire before
// the work that follows it in JS (the peer starts on it meanwhile, as with net's synchronous write); the turn's
// later writes stay listed and leave together at its end.
void sg_send_now(socket* s);
// sg_write, then the same early send for bytes that did not go through staging. Returns the bytes pending before
// that send (write() measures them against its mark) or -errno.
int64_t sg_write_now(socket* s, const struct iovec* iov, const napi_value* holders, int iovcnt);
// Half-close after the queue drains. Returns 1 when done at once, 0 when deferred (SHUTDOWN record follows).
int sg_shutdown(socket* s);
void sg_set_reading(socket* s, bool on);
// Socket options as one int. SOL_SOCKET/SO_LINGER uses the SG_LINGER_* encoding both ways (get answers
// SG_LINGER_OFF or the seconds); everything else is the kernel's int. 0 or -errno.
int sg_setsockopt(socket* s, int level, int name, int value);
// Whether `value` is acceptable for the option (the SO_LINGER encoding's range); the glue rejects the rest.
bool sg_sockopt_value_ok(int level, int name, int value);
int sg_getsockopt(socket* s, int level, int name, int* value);
// Handles one readiness event for s.
void sg_on_event(socket* s, uint32_t flags);
// Closes the fd and frees s. Never blocks: a lingering close is turned into a background one first.
void sg_close(socket* s);
// Removes s from the loop without closing its fd and frees s; returns the fd, or -EBUSY (s untouched) while
// bytes are still queued natively.
int sg_detach(socket* s);
void sg_update_interest(socket* s);
// Appends bytes to the queue (copied) and schedules a flush: what TLS produces goes out this way.
bool sg_queue_copy(socket* s, const char* p, uint32_t n);
// Reports an error for s once and stops its I/O.
void sg_fail(socket* s, int err, int32_t syscall);

// ---------------------------------------------------------------------------------------------------------
// parked connections (park.cc): one table per process, shared by every thread

// Longest key of a parked connection (a random id in hex), and the length of the process's default token key.
constexpr uint32_t SG_PARK_KEY_MAX = 64;
constexpr uint32_t SG_PARK_SECRET_LEN = 32;

// Takes ownership of fd and copies `unread` (bytes already read from it, not yet consumed). idle_ms > 0: the entry
// is closed once that long has passed without a take. 0, -EEXIST (key in use), -EINVAL or -ENOMEM (nothing taken).
int sg_park_put(const char* key, int fd, const char* unread, uint32_t len, int64_t idle_ms);
// Removes the entry and hands over its fd and unread bytes (malloc'ed, the caller frees); -EPIPE when there is
// no such entry (never parked, taken already, or reclaimed).
int sg_park_take(const char* key, int* fd, char** unread, uint32_t* len);
// Closes a parked connection (idle reclaim). 0, or -EPIPE when it is no longer parked.
int sg_park_close(const char* key);
// Closes every entry past its deadline; how many.
int sg_park_sweep();
uint32_t sg_park_count();
// The process's default token key: the first candidate offered wins, every later caller gets the same bytes.
const unsigned char* sg_park_secret(const unsigned char* candidate);

// ---------------------------------------------------------------------------------------------------------
// descriptors across processes (pass.cc): the local broker's Unix socket

// Largest message: a parked connection's unread bytes plus its description.
constexpr uint32_t SG_PASS_MAX = 64 * 1024 * 1024;

// A listening Unix stream socket at `path`, mode 0600 before it listens. fd or -errno.
int sg_unix_listen(const char* path);
// Connects to `path`; sends and receives time out after timeout_ms. -EACCES when another user listens there.
int sg_unix_connect(const char* path, int timeout_ms);
// Waits up to wait_ms for a connection: fd, -EAGAIN (none came), -EACCES (another user's process: refused and
// closed) or -errno.
int sg_unix_accept(int lfd, int wait_ms, int timeout_ms);
// One message: `n` bytes, with pass_fd (>= 0) riding along. 0 or -errno.
int sg_unix_send(int fd, const char* p, uint32_t n, int pass_fd);
// One message (malloc'ed into *out) and the descriptor that came with it (-1 when none). 0 or -errno.
int sg_unix_recv(int fd, char** out, uint32_t* len, int* got_fd);

// ---------------------------------------------------------------------------------------------------------
// TLS (tls.cc). OpenSSL is taken from the host process (Node exports its own); where it is absent every call
// answers "unavailable" and JS uses its own TLS over the plain socket instead.

struct tls_conn {
  ::ssl_st* ssl;
  // Plaintext written since the last flush: the turn's writes become one record (as Node's TLS batches them).
  char* plain;
  uint32_t plain_len;
  uint32_t plain_cap;
  int sys_err;   // errno of the last failed recv under TLS
  bool eof;      // the kernel reported end of stream under TLS
  // A recv returned less than asked since the last readiness event: the kernel queue is empty, so the next
  // read would only say EAGAIN (the same shortcut read_stream takes).
  bool drained;
  // The latest session the server handed out (DER), for resumption; and why TLS failed, for JS.
  unsigned char* session;
  uint32_t session_len;
  char err[256];
  char err_lib[64];
  char err_reason[128];
};

struct tls_ctx_args {
  const char* ca;       // PEM bundle of trusted roots (required)
  size_t ca_len;
  const char* cert;     // client certificate chain, PEM, or null
  size_t cert_len;
  const char* key;      // its private key, PEM, or null
  size_t key_len;
  const char* passphrase;
  const char* ciphers;  // TLS 1.2 cipher list, or null
  const char* suites;   // TLS 1.3 ciphersuites, or null
  int min_version;      // TLS1_2_VERSION etc., 0 for the library default
  int max_version;
};

bool sg_tls_available();
// A client context (SSL_CTX*), or null with `err` filled. Freed with sg_tls_context_free once JS drops it
// (connections keep their own reference).
void* sg_tls_context(const tls_ctx_args* a, char* err, size_t errlen);
void sg_tls_context_free(void* ctx);
// Puts TLS on a socket that is connecting (the handshake starts once TCP is up) or connected and not ending
// (STARTTLS: the ClientHello is queued after whatever the socket already queued, and the handshake starts at
// once). 0 or -errno: -EINVAL when the socket already has TLS, is UDP, failed or is ending.
int sg_tls_start(socket* s, void* ctx, const char* servername, const unsigned char* alpn, size_t alpn_len,
                 const unsigned char* session, size_t session_len);
void sg_tls_connected(socket* s);
void sg_tls_handshake(socket* s);
void sg_tls_read(socket* s);
// Takes plaintext: small pieces wait for the flush (one record for the turn), large ones are encrypted at once.
// false: out of memory or a TLS failure (then tls->err says which).
bool sg_tls_write(socket* s, const char* p, uint32_t n);
// Encrypts the waiting plaintext into the queue. 0 or -errno.
int sg_tls_encrypt(socket* s);
// Queues close_notify (after the waiting plaintext).
void sg_tls_close_notify(socket* s);
void sg_tls_free(socket* s);
bool sg_tls_has_pending(socket* s);
// After the handshake (s->tls set): the certificate check's result (X509_V_OK = 0) and its text.
int sg_tls_verify_result(socket* s, const char** text);
// Negotiated ALPN protocol (null when none), protocol version name, cipher names, whether resumed.
const unsigned char* sg_tls_alpn(socket* s, unsigned* len);
const char* sg_tls_version(socket* s);
void sg_tls_cipher(socket* s, const char** name, const char** standard, const char** version);
bool sg_tls_reused(socket* s);
// DER of the peer's certificate `i` (0 = its own, then the chain it sent), malloc'ed into *der; the length, or
// -1 when there is no such certificate.
int sg_tls_peer_cert(socket* s, int i, unsigned char** der);
// DER of the current session, malloc'ed; the length, or -1.
int sg_tls_session_der(socket* s, unsigned char** der);

// ---------------------------------------------------------------------------------------------------------
// loop (loop.cc)

struct thread_poller;

struct loop {
  napi_env env;
  int32_t backend;  // SG_BACKEND_*
  uv_loop_t* uv;    // uv backend only; the uv handles below are never initialised by the thread backend
  int pfd;
  uv_poll_t poll;
  uv_prepare_t prepare;
  uv_check_t check;
  // Active only while flushing left work for later: keeps libuv from blocking in poll meanwhile.
  uv_idle_t idle;
  int open_handles;
  bool closing;
  bool in_dispatch;
  // A stream read stopped because the slab (or the record buffer) was full, not because the kernel ran dry.
  bool read_more;
  bool ref;
  napi_async_cleanup_hook_handle cleanup;

  uint8_t* slab;
  uint32_t slab_len;
  uint32_t slab_used;
  int32_t* rec;
  uint32_t rec_n;

  // By id; as many slots as the counter chunks cover (grown with them, so registering never allocates).
  socket** socks;
  uint32_t nsocks;
  uint32_t live;               // sockets registered
  // While the loop has a single socket, libuv watches that socket's descriptor directly: a wake-up then costs
  // no second epoll_wait on the poll set (a syscall per round trip is what separates a request/response client
  // from net). The second socket moves it into the poll set.
  socket* direct;
  struct direct_watch* dw;
  uint64_t** chunks;
  napi_ref* chunk_refs;
  uint32_t nchunks;
  uint8_t* stage;
  uint32_t stage_len;
  int32_t* stage_rec;
  uint32_t stage_cap;  // records
  std::vector<uint32_t> dirty;  // ids to flush at the end of this turn
  // Drained write queues hand their small buffers back here, so a busy socket does not malloc/free per turn and
  // an idle one holds nothing.
  std::vector<char*> spare_bufs;
  std::vector<wseg*> spare_segs;
  uint32_t next_gen;

  napi_ref slab_ref;
  napi_ref stage_ref;
  napi_ref stage_rec_ref;
  napi_ref rec_ref;
  napi_ref fn_ref;
  napi_ref owner_ref;  // the JS Loop that owns this loop, handed to every other copy of the JS side
  napi_async_context async_ctx;
  napi_ref resource_ref;
  // Thread backend: the helper thread, the JS function that schedules a settle, and whether one is scheduled
  // (so a busy turn calls it once) or the loop is already inside one (so nothing schedules from within).
  thread_poller* tp;
  napi_ref schedule_ref;
  bool settle_scheduled;
  bool settling;
  // Records that found the buffer full. The margin rule keeps this at 0; it exists so that a broken rule shows
  // up in a counter rather than as memory corruption or an abort.
  uint32_t rec_overflow;
};

// The JS-owned memory and callbacks a loop runs on.
struct loop_init_args {
  napi_value slab_ab;       // ArrayBuffer of at least SG_SLAB_MIN bytes: the receive slab
  napi_value rec_ta;        // Int32Array of at least SG_REC_CAP * SG_REC_INTS: the records
  napi_value fn;            // dispatch(count)
  napi_value stage_ab;      // ArrayBuffer: staged write bytes
  napi_value stage_rec_ta;  // Int32Array of at least SG_STAGE_HDR + SG_STAGE_INTS: staged write records
  napi_value owner;         // the JS object that owns the loop (answered by sg_loop_owner)
  int32_t backend;          // SG_BACKEND_*
  napi_value schedule;      // thread backend: schedule(later: boolean) queues one loop_settle() call
};
// Creates this environment's loop and makes it the environment's instance data. 0 or -errno; on failure
// nothing is left behind (no reference, handle, descriptor or instance data).
int sg_loop_create(napi_env env, const loop_init_args* a, loop** out);
// The owner given to sg_loop_create, or nullptr.
napi_value sg_loop_owner(napi_env env, loop* lp);
// Moves every staged write into its socket's queue (marking it dirty). Cheap when nothing is staged.
void sg_loop_unstage(loop* lp);
// Unstages and flushes every dirty socket now, without dispatching: JS calls it when its dispatch moves past the
// records of a socket that wrote, so replies leave before the handlers of other sockets and the tick queue run.
// Inside a dispatch it stops while records run short (the rest leaves with the turn's flush).
void sg_loop_flush(loop* lp);
// Adds a counter chunk (8-byte aligned ArrayBuffer of SG_CHUNK * SG_CTR_SLOTS uint64) for the next SG_CHUNK
// socket ids. The number of chunks, or -errno (nothing added).
int sg_loop_add_chunk(napi_env env, loop* lp, napi_value ab);
loop* sg_loop_get(napi_env env);
socket* sg_loop_find(loop* lp, uint32_t id);
uint64_t* sg_loop_counters(loop* lp, uint32_t id);
// Inserts s into the table and the poll set.
int sg_loop_register(loop* lp, socket* s, uint32_t interest);
void sg_loop_unregister(loop* lp, socket* s);
// Changes what is watched for s. 0 stops all reporting (a hang-up on an unwatched socket cannot spin the loop).
int sg_loop_watch(loop* lp, socket* s, uint32_t interest);
void sg_loop_mark_dirty(loop* lp, socket* s);
// Appends a record. The loop keeps SG_REC_MARGIN records free before it hands an event to a socket, and never
// dispatches from inside a socket operation, so a socket is never freed under its own feet.
void sg_loop_record(loop* lp, uint32_t id, int32_t type, int32_t a, int32_t b);
// Free receive slab (at least `min` bytes), or nullptr when less is left or records are running out.
uint8_t* sg_loop_slab(loop* lp, uint32_t min, uint32_t* avail);
void sg_loop_commit_slab(loop* lp, uint32_t used);
void sg_loop_dispatch(loop* lp);
void sg_loop_set_ref(loop* lp, bool ref);
// Thread backend, on the JS thread: drains the ready set, dispatches and settles (the helper thread's wake-up).
void sg_loop_poll(loop* lp);
// Thread backend: the settle JS scheduled. Returns 1 when work is left for another turn (JS then schedules one
// with setImmediate), else 0.
int sg_loop_settle(loop* lp);
// Frees everything the loop holds besides its uv handles or helper thread.
void sg_loop_release(loop* lp);

// ---------------------------------------------------------------------------------------------------------
// thread backend (poll_thread.cc)

// Starts the helper thread over lp->pfd, its threadsafe function (unref'd) and the environment cleanup hook that
// stops it. 0 or -errno; on failure nothing is left running.
int sg_thread_start(loop* lp);
void sg_thread_set_ref(loop* lp, bool ref);
// On the JS thread, once the ready set has been drained: lets the helper thread wait again.
void sg_thread_ack(loop* lp);

}  // namespace sg
