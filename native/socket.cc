// Per-socket operations. Errors never leave as exceptions: a failing syscall becomes a record (async paths)
// or a negative errno return (calls made from JS).
#include "sg.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

namespace sg {

// Writes of at least this size are not copied: the queue holds a reference to the caller's buffer until the
// kernel has taken it. Smaller writes are copied. Either way everything queued in one loop turn leaves in one
// sendmsg: many small writes become one syscall, and large ones leave in large batches (bulk throughput on
// loopback roughly doubles from 64 KiB to 1 MiB per send).
constexpr size_t kHoldWrite = 16 * 1024;
constexpr int kMaxIov = 1024;
// Bound on bytes read from one socket in one readiness batch, so one busy socket cannot starve the rest
// (libuv's "prevent loop starvation" in uv__read follows the same idea).
constexpr size_t kReadBudget = 1024 * 1024;
// Write buffers above this size are released once drained, so idle sockets hold no large buffers.
constexpr uint32_t kKeepBuffer = 16 * 1024;
constexpr uint32_t kMinBuffer = 4 * 1024;
constexpr uint32_t kSpareSegs = 8;
constexpr size_t kSpareMax = 64;
// sendmsg batches per flush; the rest waits for writability (libuv's "prevent loop starvation" idea again).
constexpr int kFlushRounds = 8;
// Smallest free slab worth a stream read.
constexpr uint32_t kMinRead = 16 * 1024;
// Largest UDP payload (65535 minus headers, rounded up), and datagrams read per socket per readiness batch.
constexpr uint32_t kMaxDgram = 64 * 1024;
constexpr int kDgramBudget = 64;

// Bytes accepted and not yet taken by the kernel: the queue, and under TLS the plaintext waiting for the flush.
static inline uint32_t pending(const socket* s) { return s->pend + (s->tls ? s->tls->plain_len : 0); }
uint32_t sg_pending(const socket* s) { return pending(s); }

static socket* make_socket(loop* lp, uint32_t id, int fd, uint32_t flags, uint32_t hwm) {
  auto* s = static_cast<socket*>(calloc(1, sizeof(socket)));
  if (!s) return nullptr;
  s->fd = fd;
  s->id = id;
  s->flags = flags;
  s->hwm = hwm;
  s->lp = lp;
  s->ctr = sg_loop_counters(lp, id);
  for (uint32_t i = 0; i < SG_CTR_SLOTS; i++) s->ctr[i] = 0;
  return s;
}

void sg_update_interest(socket* s) {
  uint32_t want = 0;
  if (s->flags & SG_F_FAILED) want = 0;
  else if (s->flags & SG_F_CONNECTING) want = SG_OUT;
  else {
    if ((s->flags & SG_F_READING) && !(s->flags & SG_F_EOF)) want |= SG_IN;
    // The handshake reads whether or not JS wants data yet.
    if (s->flags & SG_F_TLS_HS) want |= SG_IN;
    if (s->flags & SG_F_WAIT_OUT) want |= SG_OUT;
  }
  if (want == s->interest) return;
  sg_loop_watch(s->lp, s, want);
}

socket* sg_tcp_connect(loop* lp, uint32_t id, int family, const char* ip, int port, uint32_t hwm, int* err) {
  if (!sg_loop_id_ok(lp, id)) {
    *err = -ERANGE;
    return nullptr;
  }
  struct sockaddr_storage ss;
  socklen_t len;
  int r = sys_make_addr(family, ip, port, &ss, &len);
  if (r < 0) {
    *err = r;
    return nullptr;
  }
  int fd = sys_socket(family, SOCK_STREAM);
  if (fd < 0) {
    *err = fd;
    return nullptr;
  }
  // Writes are coalesced natively, so Nagle would only add latency.
  sys_setsockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  r = sys_connect(fd, reinterpret_cast<struct sockaddr*>(&ss), len);
  if (r < 0 && r != -EINPROGRESS) {
    sys_close(fd);
    *err = r;
    return nullptr;
  }
  socket* s = make_socket(lp, id, fd, SG_F_STREAM | SG_F_CONNECTING | SG_F_READING, hwm);
  if (!s) {
    sys_close(fd);
    *err = -ENOMEM;
    return nullptr;
  }
  // Completion is always reported through writability, even when connect() finished at once, so JS sees one
  // path for every outcome.
  r = sg_loop_register(lp, s, SG_OUT);
  if (r < 0) {
    sys_close(fd);
    free(s);
    *err = r;
    return nullptr;
  }
  return s;
}

socket* sg_udp_open(loop* lp, uint32_t id, int family, int* err) {
  if (!sg_loop_id_ok(lp, id)) {
    *err = -ERANGE;
    return nullptr;
  }
  if (family != 4 && family != 6) {
    *err = -EAFNOSUPPORT;
    return nullptr;
  }
  int fd = sys_socket(family, SOCK_DGRAM);
  if (fd < 0) {
    *err = fd;
    return nullptr;
  }
  socket* s = make_socket(lp, id, fd, SG_F_READING, 0);
  if (!s) {
    sys_close(fd);
    *err = -ENOMEM;
    return nullptr;
  }
  int r = sg_loop_register(lp, s, SG_IN);
  if (r < 0) {
    sys_close(fd);
    free(s);
    *err = r;
    return nullptr;
  }
  return s;
}

// Whether a linger setting would make close() wait (on, with a positive timeout).
static inline bool lingers(int onoff, int seconds) { return onoff != 0 && seconds > 0; }

socket* sg_adopt(loop* lp, uint32_t id, int fd, uint32_t hwm, int* err) {
  if (!sg_loop_id_ok(lp, id)) {
    *err = -ERANGE;
    return nullptr;
  }
  int type = 0, family = 0;
  int r = sys_describe(fd, &type, &family);
  if (r == 0) r = sys_set_nonblock(fd);
  if (r < 0) {
    *err = r;
    return nullptr;
  }
  bool stream = type == SOCK_STREAM;
  // The previous owner may have set SO_LINGER; closing must not block on its account either.
  int onoff = 0, seconds = 0;
  bool linger = sys_get_linger(fd, &onoff, &seconds) < 0 || lingers(onoff, seconds);
  uint32_t flags = (stream ? SG_F_STREAM | SG_F_CONNECTED : 0) | SG_F_READING;
  if (linger) flags |= SG_F_LINGER;
  socket* s = make_socket(lp, id, fd, flags, hwm);
  if (!s) {
    *err = -ENOMEM;
    return nullptr;
  }
  r = sg_loop_register(lp, s, SG_IN);
  if (r < 0) {
    free(s);
    *err = r;
    return nullptr;
  }
  return s;
}

static bool push_seg(socket* s, const wseg& g) {
  if (s->stail == s->scap) {
    if (s->shead > 0) {
      // Reuse the consumed prefix before growing.
      memmove(s->segs, s->segs + s->shead, (s->stail - s->shead) * sizeof(wseg));
      s->stail -= s->shead;
      s->shead = 0;
    } else {
      uint32_t cap = s->scap ? s->scap * 2 : kSpareSegs;
      if (s->scap == 0 && !s->lp->spare_segs.empty()) {
        s->segs = s->lp->spare_segs.back();
        s->lp->spare_segs.pop_back();
        s->scap = kSpareSegs;
        s->segs[s->stail++] = g;
        return true;
      }
      auto* ns = static_cast<wseg*>(realloc(s->segs, cap * sizeof(wseg)));
      if (!ns) return false;
      s->segs = ns;
      s->scap = cap;
    }
  }
  s->segs[s->stail++] = g;
  return true;
}

static bool copy_in(socket* s, const char* p, uint32_t n) {
  if (n == 0) return true;
  uint64_t need = static_cast<uint64_t>(s->wlen) + n;
  if (need > UINT32_MAX / 2) return false;
  if (need > s->wcap && s->wcap == 0 && need <= kMinBuffer && !s->lp->spare_bufs.empty()) {
    s->wbuf = s->lp->spare_bufs.back();
    s->lp->spare_bufs.pop_back();
    s->wcap = kMinBuffer;
  }
  if (need > s->wcap) {
    uint32_t cap = s->wcap ? s->wcap : kMinBuffer;
    while (cap < need) cap *= 2;
    // Own segments store offsets, so moving wbuf invalidates nothing.
    char* nb = static_cast<char*>(realloc(s->wbuf, cap));
    if (!nb) return false;
    s->wbuf = nb;
    s->wcap = cap;
  }
  memcpy(s->wbuf + s->wlen, p, n);
  if (s->stail > s->shead) {
    wseg& last = s->segs[s->stail - 1];
    if (last.ptr == nullptr && last.off + last.len == s->wlen) {
      last.len += n;
      s->wlen += n;
      s->pend += n;
      return true;
    }
  }
  if (!push_seg(s, wseg{nullptr, n, s->wlen, nullptr})) return false;
  s->wlen += n;
  s->pend += n;
  return true;
}

static bool hold(socket* s, const char* p, uint32_t n, napi_value holder) {
  napi_ref ref = nullptr;
  if (napi_create_reference(s->lp->env, holder, 1, &ref) != napi_ok) return copy_in(s, p, n);
  if (!push_seg(s, wseg{p, n, 0, ref})) {
    napi_delete_reference(s->lp->env, ref);
    return false;
  }
  s->pend += n;
  return true;
}

static void release_seg(socket* s, wseg& g) {
  if (g.ref) {
    napi_delete_reference(s->lp->env, g.ref);
    g.ref = nullptr;
  }
}

// Empties the queue and gives back its memory, so idle sockets hold no buffers.
static void queue_clear(socket* s) {
  for (uint32_t i = s->shead; i < s->stail; i++) release_seg(s, s->segs[i]);
  loop* lp = s->lp;
  if (s->scap == kSpareSegs && lp->spare_segs.size() < kSpareMax && !lp->closing) lp->spare_segs.push_back(s->segs);
  else free(s->segs);
  if (s->wcap == kMinBuffer && lp->spare_bufs.size() < kSpareMax && !lp->closing) lp->spare_bufs.push_back(s->wbuf);
  else free(s->wbuf);
  s->segs = nullptr;
  s->wbuf = nullptr;
  s->scap = s->shead = s->stail = 0;
  s->wcap = s->wlen = s->pend = 0;
}

// One sendmsg of the head of the queue. Bytes the kernel took leave the queue. Returns them, or -errno.
bool sg_queue_copy(socket* s, const char* p, uint32_t n) {
  if (!copy_in(s, p, n)) return false;
  if ((s->flags & SG_F_CONNECTED) && !(s->flags & (SG_F_WAIT_OUT | SG_F_DIRTY))) sg_loop_mark_dirty(s->lp, s);
  return true;
}

static ssize_t send_head(socket* s, size_t* offered) {
  struct iovec v[kMaxIov];
  int n = 0;
  size_t total = 0;
  for (uint32_t i = s->shead; i < s->stail && n < kMaxIov; i++) {
    const wseg& g = s->segs[i];
    v[n].iov_base = const_cast<char*>(g.ptr ? g.ptr : s->wbuf + g.off);
    v[n].iov_len = g.len;
    total += g.len;
    n++;
  }
  *offered = total;
  if (n == 0) return 0;
  ssize_t w = sys_writev(s->fd, v, n);
  if (w <= 0) return w;
  s->ctr[SG_CTR_BYTES_WRITTEN] += static_cast<uint64_t>(w);
  s->ctr[SG_CTR_SEND_CALLS]++;
  size_t left = static_cast<size_t>(w);
  s->pend -= static_cast<uint32_t>(w);
  while (left > 0) {
    wseg& g = s->segs[s->shead];
    if (left >= g.len) {
      left -= g.len;
      release_seg(s, g);
      s->shead++;
    } else {
      if (g.ptr) g.ptr += left;
      else g.off += static_cast<uint32_t>(left);
      g.len -= static_cast<uint32_t>(left);
      left = 0;
    }
  }
  if (s->shead == s->stail) {
    s->shead = s->stail = 0;
    s->wlen = 0;
  }
  return w;
}

static void fail(socket* s, int err, int32_t syscall) { sg_fail(s, err, syscall); }

void sg_fail(socket* s, int err, int32_t syscall) {
  if (s->flags & SG_F_FAILED) return;
  s->flags |= SG_F_FAILED;
  s->flags &= ~(SG_F_WAIT_OUT | SG_F_WANT_DRAIN);
  sg_update_interest(s);
  sg_loop_record(s->lp, s->id, SG_REC_ERROR, err, syscall);
}

static void after_drain(socket* s) {
  s->ctr[SG_CTR_PENDING] = 0;
  queue_clear(s);
  if (s->flags & SG_F_WAIT_OUT) {
    s->flags &= ~SG_F_WAIT_OUT;
    sg_update_interest(s);
  }
  if (s->flags & SG_F_WANT_DRAIN) {
    s->flags &= ~SG_F_WANT_DRAIN;
    sg_loop_record(s->lp, s->id, SG_REC_DRAIN, 0, 0);
  }
  if ((s->flags & SG_F_SHUT_PENDING) && !(s->flags & SG_F_SHUT_DONE)) {
    s->flags &= ~SG_F_SHUT_PENDING;
    s->flags |= SG_F_SHUT_DONE;
    int r = sys_shutdown_wr(s->fd);
    sg_loop_record(s->lp, s->id, SG_REC_SHUTDOWN, r, 0);
  }
}

int64_t sg_write(socket* s, const struct iovec* iov, const napi_value* holders, int iovcnt) {
  if (s->flags & SG_F_FAILED) return -EPIPE;
  if (s->flags & (SG_F_SHUT_PENDING | SG_F_SHUT_DONE)) return -EPIPE;
  // Whether this is the first write of the turn for an idle TLS socket (decided before queuing: encrypting
  // already schedules the flush).
  const bool now = s->tls && pending(s) == 0 && (s->flags & SG_F_CONNECTED) &&
                   !(s->flags & (SG_F_WAIT_OUT | SG_F_DIRTY | SG_F_TLS_HS));
  for (int i = 0; i < iovcnt; i++) {
    size_t l = iov[i].iov_len;
    if (l > UINT32_MAX / 2 - pending(s)) return -ENOBUFS;
    const char* p = static_cast<const char*>(iov[i].iov_base);
    bool ok = s->tls ? sg_tls_write(s, p, static_cast<uint32_t>(l))
              : (holders && l >= kHoldWrite) ? hold(s, p, static_cast<uint32_t>(l), holders[i])
                                              : copy_in(s, p, static_cast<uint32_t>(l));
    if (!ok) return s->tls && s->tls->err[0] ? -EPROTO : -ENOBUFS;
  }
  uint32_t left = pending(s);
  s->ctr[SG_CTR_PENDING] = left;
  if (left == 0) return 0;
  if (now) {
    // The first write of a turn leaves at once as a record of its own, and the rest of the turn's writes follow
    // together as one record, as Node's TLS does: a request reaches the wire without waiting for the end of the
    // turn, and a peer that answers record by record starts on it while this side is still producing, so a
    // pipelined exchange keeps several flights on the wire instead of settling into lock-step.
    sg_flush(s);
    left = pending(s);
    s->ctr[SG_CTR_PENDING] = left;
    // Later writes of this turn wait for its end, together.
    if (!(s->flags & (SG_F_DIRTY | SG_F_WAIT_OUT | SG_F_FAILED))) sg_loop_mark_dirty(s->lp, s);
    if (left > s->hwm) s->flags |= SG_F_WANT_DRAIN;
    return left;
  }
  if ((s->flags & SG_F_CONNECTED) && !(s->flags & (SG_F_WAIT_OUT | SG_F_DIRTY))) sg_loop_mark_dirty(s->lp, s);
  if (left > s->hwm) s->flags |= SG_F_WANT_DRAIN;
  return left;
}

void sg_flush(socket* s) {
  if (!(s->flags & SG_F_CONNECTED) || (s->flags & SG_F_FAILED)) return;
  if (s->tls) {
    if (s->flags & SG_F_TLS_AGAIN) sg_tls_read(s);
    int r = sg_tls_encrypt(s);
    if (r < 0) {
      fail(s, r, SG_SYS_WRITE);
      return;
    }
  }
  // Bounded: at most a few batches of kMaxIov segments per turn; the rest waits for writability.
  for (int round = 0; round < kFlushRounds && pending(s) > 0; round++) {
    size_t offered = 0;
    ssize_t w = send_head(s, &offered);
    if (w < 0 && w != -EAGAIN) {
      fail(s, static_cast<int>(w), SG_SYS_WRITE);
      return;
    }
    if (w < 0 || static_cast<size_t>(w) < offered) break;
  }
  uint32_t left = pending(s);
  s->ctr[SG_CTR_PENDING] = left;
  if (left == 0) {
    after_drain(s);
  } else if (!(s->flags & SG_F_WAIT_OUT)) {
    s->flags |= SG_F_WAIT_OUT;
    sg_update_interest(s);
  }
}

// Whether the socket is already in the turn's flush list: it sent early once this turn, or waits for
// writability or a shutdown. Asked before queuing, which lists it.
static inline bool listed(const socket* s) { return (s->flags & (SG_F_DIRTY | SG_F_WAIT_OUT)) != 0; }

static void send_early(socket* s) {
  if (!(s->flags & SG_F_CONNECTED) || (s->flags & SG_F_FAILED)) return;
  loop* lp = s->lp;
  // Records this may add (error, drain, shutdown) must fit beside a batch JS may be dispatching right now;
  // otherwise the bytes leave with the turn's flush.
  if (lp->rec_n + SG_REC_MARGIN > SG_REC_CAP) return;
  sg_flush(s);
  // Staying listed until the turn's flush is what makes the turn's later writes wait for it, together.
  if (!(s->flags & (SG_F_DIRTY | SG_F_WAIT_OUT | SG_F_FAILED))) sg_loop_mark_dirty(lp, s);
}

void sg_send_now(socket* s) {
  const bool was = listed(s);
  sg_loop_unstage(s->lp);
  if (!was) send_early(s);
}

int64_t sg_write_now(socket* s, const struct iovec* iov, const napi_value* holders, int iovcnt) {
  const bool was = listed(s);
  int64_t r = sg_write(s, iov, holders, iovcnt);
  if (r > 0 && !was) send_early(s);
  // What was pending before the send: a chunk above the mark still asks the caller to wait (a DRAIN record
  // follows once the queue is empty), as net's write() does for a chunk it wrote at once.
  return r;
}

ssize_t sg_udp_send(socket* s, const void* buf, size_t len, const char* ip, int port, int family) {
  ssize_t w;
  if (ip) {
    struct sockaddr_storage ss;
    socklen_t sl;
    int r = sys_make_addr(family, ip, port, &ss, &sl);
    if (r < 0) return r;
    w = sys_sendto(s->fd, buf, len, reinterpret_cast<struct sockaddr*>(&ss), sl);
  } else {
    w = sys_sendto(s->fd, buf, len, nullptr, 0);
  }
  if (w >= 0) {
    s->ctr[SG_CTR_BYTES_WRITTEN] += static_cast<uint64_t>(w);
    s->ctr[SG_CTR_SEND_CALLS]++;
  }
  return w;
}

int sg_shutdown(socket* s) {
  if (s->flags & (SG_F_SHUT_PENDING | SG_F_SHUT_DONE)) return 0;
  // TLS ends with close_notify, then the FIN.
  if (s->tls && (s->flags & SG_F_CONNECTED)) sg_tls_close_notify(s);
  if ((s->flags & SG_F_CONNECTED) && pending(s) == 0) {
    s->flags |= SG_F_SHUT_DONE;
    int r = sys_shutdown_wr(s->fd);
    return r < 0 ? r : 1;
  }
  s->flags |= SG_F_SHUT_PENDING;
  if ((s->flags & SG_F_CONNECTED) && !(s->flags & (SG_F_WAIT_OUT | SG_F_DIRTY))) sg_loop_mark_dirty(s->lp, s);
  return 0;
}

void sg_set_reading(socket* s, bool on) {
  if (on) s->flags |= SG_F_READING;
  else s->flags &= ~SG_F_READING;
  if (!(s->flags & SG_F_CONNECTING)) sg_update_interest(s);
  // Records TLS already took from the kernel will not be signalled again.
  if (on && sg_tls_has_pending(s) && !(s->flags & SG_F_TLS_HS)) {
    s->flags |= SG_F_TLS_AGAIN;
    if ((s->flags & SG_F_CONNECTED) && !(s->flags & SG_F_DIRTY)) sg_loop_mark_dirty(s->lp, s);
  }
}

static void on_connected(socket* s) {
  int err = sys_so_error(s->fd);
  if (err < 0) {
    s->flags &= ~SG_F_CONNECTING;
    s->flags |= SG_F_FAILED;
    sg_update_interest(s);
    sg_loop_record(s->lp, s->id, SG_REC_CONNECT, err, 0);
    return;
  }
  s->flags &= ~SG_F_CONNECTING;
  s->flags |= SG_F_CONNECTED;
  if (s->tls) {
    // JS hears of the connection once the handshake is done; until then JS holds its writes.
    sg_tls_connected(s);
    return;
  }
  sg_update_interest(s);
  sg_loop_record(s->lp, s->id, SG_REC_CONNECT, 0, 0);
  // Bytes written while connecting, and an end() called meanwhile, leave with the next flush.
  if ((pending(s) || (s->flags & SG_F_SHUT_PENDING)) && !(s->flags & SG_F_DIRTY)) sg_loop_mark_dirty(s->lp, s);
}

static void read_stream(socket* s) {
  loop* lp = s->lp;
  size_t budget = kReadBudget;
  while (budget > 0 && (s->flags & SG_F_READING) && !(s->flags & (SG_F_EOF | SG_F_FAILED))) {
    uint32_t avail;
    uint8_t* dst = sg_loop_slab(lp, kMinRead, &avail);
    // Out of slab or record space: stop; the loop reads on after its dispatch (or level-triggered readiness brings
    // this socket back next batch).
    if (!dst) {
      lp->read_more = true;
      break;
    }
    uint32_t off = lp->slab_used;
    size_t want = avail < budget ? avail : budget;
    ssize_t n = sys_recv(s->fd, dst, want);
    if (n > 0) {
      s->ctr[SG_CTR_BYTES_READ] += static_cast<uint64_t>(n);
      s->ctr[SG_CTR_RECV_CALLS]++;
      sg_loop_commit_slab(lp, static_cast<uint32_t>(n));
      sg_loop_record(lp, s->id, SG_REC_DATA, static_cast<int32_t>(off), static_cast<int32_t>(n));
      budget -= static_cast<size_t>(n);
      // A short read means the kernel queue is empty; skip the syscall that would only say EAGAIN.
      if (static_cast<size_t>(n) < want) break;
      continue;
    }
    if (n == 0) {
      s->flags |= SG_F_EOF;
      sg_update_interest(s);
      sg_loop_record(lp, s->id, SG_REC_EOF, 0, 0);
      break;
    }
    if (n == -EAGAIN) break;
    fail(s, static_cast<int>(n), SG_SYS_READ);
    break;
  }
}

static void read_dgrams(socket* s) {
  loop* lp = s->lp;
  for (int i = 0; i < kDgramBudget && (s->flags & SG_F_READING) && !(s->flags & SG_F_FAILED); i++) {
    uint32_t avail;
    uint8_t* dst = sg_loop_slab(lp, kMaxDgram + SG_DGRAM_HDR, &avail);
    if (!dst) break;
    uint32_t off = lp->slab_used;
    struct sockaddr_storage from;
    socklen_t fromlen;
    ssize_t n = sys_recvfrom(s->fd, dst + SG_DGRAM_HDR, avail - SG_DGRAM_HDR, &from, &fromlen);
    if (n == -EAGAIN) break;
    if (n < 0) {
      // A connected UDP socket reports ICMP errors (ECONNREFUSED) here; report and keep the socket usable.
      sg_loop_record(lp, s->id, SG_REC_ERROR, static_cast<int32_t>(n), SG_SYS_READ);
      break;
    }
    memset(dst, 0, SG_DGRAM_HDR);
    if (from.ss_family == AF_INET) {
      auto* sin = reinterpret_cast<struct sockaddr_in*>(&from);
      dst[0] = 4;
      uint16_t port = ntohs(sin->sin_port);
      memcpy(dst + 2, &port, 2);
      memcpy(dst + 4, &sin->sin_addr, 4);
    } else if (from.ss_family == AF_INET6) {
      auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&from);
      dst[0] = 6;
      uint16_t port = ntohs(sin6->sin6_port);
      memcpy(dst + 2, &port, 2);
      memcpy(dst + 4, &sin6->sin6_addr, 16);
    }
    s->ctr[SG_CTR_BYTES_READ] += static_cast<uint64_t>(n);
    s->ctr[SG_CTR_RECV_CALLS]++;
    sg_loop_commit_slab(lp, SG_DGRAM_HDR + static_cast<uint32_t>(n));
    sg_loop_record(lp, s->id, SG_REC_DGRAM, static_cast<int32_t>(off), static_cast<int32_t>(n));
  }
}

void sg_on_event(socket* s, uint32_t flags) {
  if (s->flags & SG_F_CONNECTING) {
    if (flags & (SG_OUT | SG_ERR | SG_HUP)) on_connected(s);
    return;
  }
  if (s->flags & SG_F_FAILED) return;
  if ((flags & SG_OUT) && (s->flags & SG_F_WAIT_OUT)) {
    s->flags &= ~SG_F_WAIT_OUT;
    sg_flush(s);
    if (!(s->flags & SG_F_WAIT_OUT)) sg_update_interest(s);
  }
  if (s->flags & SG_F_TLS_HS) {
    if (flags & (SG_IN | SG_HUP | SG_ERR)) sg_tls_handshake(s);
    return;
  }
  if ((flags & (SG_IN | SG_HUP | SG_ERR)) && (s->flags & SG_F_READING) && !(s->flags & SG_F_EOF)) {
    if (s->tls) sg_tls_read(s);
    else if (s->flags & SG_F_STREAM) read_stream(s);
    else read_dgrams(s);
    return;
  }
  if ((flags & SG_ERR) && !(s->flags & SG_F_FAILED)) {
    int err = sys_so_error(s->fd);
    if (err < 0) fail(s, err, (s->flags & SG_F_WAIT_OUT) ? SG_SYS_WRITE : SG_SYS_READ);
  }
  if ((flags & (SG_HUP | SG_ERR)) && !(s->interest & flags & (SG_IN | SG_OUT))) {
    // epoll reports hang-up and error whatever the interest; a paused or finished socket would spin on it.
    // Leave the set until JS resumes reading (or closes the socket).
    if (s->interest != 0) sg_loop_watch(s->lp, s, 0);
  }
}

bool sg_sockopt_value_ok(int level, int name, int value) {
  if (level == SOL_SOCKET && name == SO_LINGER) return value == SG_LINGER_OFF || (value >= 0 && value <= SG_LINGER_MAX);
  return true;
}

int sg_setsockopt(socket* s, int level, int name, int value) {
  if (level == SOL_SOCKET && name == SO_LINGER) {
    if (!sg_sockopt_value_ok(level, name, value)) return -EINVAL;
    bool on = value != SG_LINGER_OFF;
    int r = sys_set_linger(s->fd, on ? 1 : 0, on ? value : 0);
    if (r == 0 && lingers(on, value)) s->flags |= SG_F_LINGER;
    return r;
  }
  return sys_setsockopt_int(s->fd, level, name, value);
}

int sg_getsockopt(socket* s, int level, int name, int* value) {
  if (level == SOL_SOCKET && name == SO_LINGER) {
    int on = 0, secs = 0;
    int r = sys_get_linger(s->fd, &on, &secs);
    if (r < 0) return r;
    *value = on ? secs : SG_LINGER_OFF;
    return 0;
  }
  return sys_getsockopt_int(s->fd, level, name, value);
}

void sg_close(socket* s) {
  // Bytes already accepted by write() leave before the descriptor closes: with net they would usually have
  // been written synchronously, so `write(); destroy()` must not lose them here just because we coalesce.
  if ((s->flags & SG_F_CONNECTED) && !(s->flags & SG_F_FAILED) && pending(s) > 0) {
    if (s->tls) sg_tls_encrypt(s);
    size_t offered = 0;
    send_head(s, &offered);
  }
  sg_tls_free(s);
  sg_loop_unregister(s->lp, s);
  // With SO_LINGER on and a timeout, close() waits (up to that timeout) for unsent bytes to be acknowledged,
  // non-blocking descriptor or not, and would stall the whole thread. Lingering off lets the kernel finish
  // sending in the background instead; on with 0 (an abortive close) never waits and is left alone.
  if (s->flags & SG_F_LINGER) sys_set_linger(s->fd, 0, 0);
  sys_close(s->fd);
  queue_clear(s);
  free(s);
}

int sg_detach(socket* s) {
  // The new owner would receive a descriptor without the bytes that were accepted for it.
  if (pending(s) != 0) return -EBUSY;
  // The TLS session lives in this process's OpenSSL: the descriptor alone cannot carry it.
  if (s->tls) return -EOPNOTSUPP;
  int fd = s->fd;
  sg_loop_unregister(s->lp, s);
  queue_clear(s);
  free(s);
  return fd;
}

}  // namespace sg
