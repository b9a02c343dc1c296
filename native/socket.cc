// Per-socket operations. Errors never leave as exceptions: a failing syscall becomes a record (async paths)
// or a negative errno return (calls made from JS).
#include "sg.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

namespace sg {

// Writes of at least this size skip the copy: they go to the kernel at once, behind whatever is queued, and
// only the part the kernel did not take is copied. Smaller writes are copied and leave together at the end of
// the loop turn, which is what makes many small writes cheap.
constexpr size_t kDirectWrite = 16 * 1024;
// Bound on bytes read from one socket in one readiness batch, so one busy socket cannot starve the rest
// (libuv's "prevent loop starvation" in uv__read follows the same idea).
constexpr size_t kReadBudget = 1024 * 1024;
// Write buffers above this size are released once drained, so idle sockets hold no large buffers.
constexpr uint32_t kKeepBuffer = 16 * 1024;
constexpr uint32_t kMinBuffer = 4 * 1024;

static inline uint64_t token_of(const socket* s) { return (static_cast<uint64_t>(s->gen) << 32) | s->id; }
static inline uint32_t pending(const socket* s) { return s->wlen - s->woff; }

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

// interest value of a socket that is not in the poll set (see the hang-up case in sg_on_event).
constexpr uint32_t kUnwatched = UINT32_MAX;

void sg_update_interest(socket* s) {
  uint32_t want = 0;
  if (s->flags & SG_F_FAILED) want = 0;
  else if (s->flags & SG_F_CONNECTING) want = SG_OUT;
  else {
    if ((s->flags & SG_F_READING) && !(s->flags & SG_F_EOF)) want |= SG_IN;
    if (s->flags & SG_F_WAIT_OUT) want |= SG_OUT;
  }
  if (want == s->interest) return;
  if (s->interest == kUnwatched) {
    if (want != 0 && sg_poll_add(s->lp->pfd, s->fd, want, token_of(s)) == 0) s->interest = want;
    return;
  }
  if (sg_poll_mod(s->lp->pfd, s->fd, s->interest, want, token_of(s)) == 0) s->interest = want;
}

socket* sg_tcp_connect(loop* lp, uint32_t id, int family, const char* ip, int port, uint32_t hwm, int* err) {
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

socket* sg_adopt(loop* lp, uint32_t id, int fd, uint32_t hwm, int* err) {
  int type = 0, family = 0;
  int r = sys_describe(fd, &type, &family);
  if (r == 0) r = sys_set_nonblock(fd);
  if (r < 0) {
    *err = r;
    return nullptr;
  }
  bool stream = type == SOCK_STREAM;
  socket* s = make_socket(lp, id, fd, (stream ? SG_F_STREAM | SG_F_CONNECTED : 0) | SG_F_READING, hwm);
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

static bool reserve(socket* s, uint32_t extra) {
  uint32_t live = pending(s);
  if (s->woff > 0 && (live == 0 || s->woff >= s->wcap / 2)) {
    // Compact instead of growing when the consumed prefix is large.
    if (live) memmove(s->wbuf, s->wbuf + s->woff, live);
    s->woff = 0;
    s->wlen = live;
  }
  uint64_t need = static_cast<uint64_t>(s->wlen) + extra;
  if (need <= s->wcap) return true;
  if (need > UINT32_MAX / 2) return false;
  uint32_t cap = s->wcap ? s->wcap : kMinBuffer;
  while (cap < need) cap *= 2;
  char* nb = static_cast<char*>(realloc(s->wbuf, cap));
  if (!nb) return false;
  s->wbuf = nb;
  s->wcap = cap;
  return true;
}

static void release_if_idle(socket* s) {
  if (pending(s) == 0) {
    s->woff = s->wlen = 0;
    if (s->wcap > kKeepBuffer || !(s->flags & SG_F_DIRTY)) {
      free(s->wbuf);
      s->wbuf = nullptr;
      s->wcap = 0;
    }
  }
}

static void fail(socket* s, int err, int32_t syscall) {
  if (s->flags & SG_F_FAILED) return;
  s->flags |= SG_F_FAILED;
  s->flags &= ~(SG_F_WAIT_OUT | SG_F_WANT_DRAIN);
  sg_update_interest(s);
  sg_loop_record(s->lp, s->id, SG_REC_ERROR, err, syscall);
}

static void after_drain(socket* s) {
  s->ctr[SG_CTR_PENDING] = 0;
  release_if_idle(s);
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

int64_t sg_write(socket* s, const struct iovec* iov, int iovcnt, size_t total) {
  if (s->flags & SG_F_FAILED) return -EPIPE;
  if (s->flags & (SG_F_SHUT_PENDING | SG_F_SHUT_DONE)) return -EPIPE;
  size_t sent = 0;
  bool ready = (s->flags & SG_F_CONNECTED) && !(s->flags & SG_F_WAIT_OUT);
  if (ready && total >= kDirectWrite && iovcnt < 1023) {
    struct iovec v[1024];
    int n = 0;
    uint32_t queued = pending(s);
    if (queued) v[n++] = {s->wbuf + s->woff, queued};
    for (int i = 0; i < iovcnt; i++) v[n++] = iov[i];
    ssize_t w = sys_writev(s->fd, v, n);
    if (w < 0 && w != -EAGAIN) {
      // Called from JS: the caller gets the error directly, so no record is added.
      s->flags |= SG_F_FAILED;
      s->flags &= ~(SG_F_WAIT_OUT | SG_F_WANT_DRAIN);
      sg_update_interest(s);
      return w;
    }
    if (w > 0) {
      s->ctr[SG_CTR_BYTES_WRITTEN] += static_cast<uint64_t>(w);
      s->ctr[SG_CTR_SEND_CALLS]++;
      size_t from_queue = static_cast<size_t>(w) < queued ? static_cast<size_t>(w) : queued;
      s->woff += static_cast<uint32_t>(from_queue);
      sent = static_cast<size_t>(w) - from_queue;
    }
  }
  if (sent < total) {
    if (!reserve(s, static_cast<uint32_t>(total - sent))) return -ENOBUFS;
    size_t skip = sent;
    for (int i = 0; i < iovcnt; i++) {
      size_t l = iov[i].iov_len;
      if (skip >= l) {
        skip -= l;
        continue;
      }
      memcpy(s->wbuf + s->wlen, static_cast<const char*>(iov[i].iov_base) + skip, l - skip);
      s->wlen += static_cast<uint32_t>(l - skip);
      skip = 0;
    }
  }
  uint32_t left = pending(s);
  s->ctr[SG_CTR_PENDING] = left;
  if (left == 0) {
    release_if_idle(s);
    return 0;
  }
  if (sent > 0 && ready) {
    // The kernel took part of a direct write: its buffer is full, so wait for writability.
    s->flags |= SG_F_WAIT_OUT;
    sg_update_interest(s);
  } else if ((s->flags & SG_F_CONNECTED) && !(s->flags & (SG_F_WAIT_OUT | SG_F_DIRTY))) {
    sg_loop_mark_dirty(s->lp, s);
  }
  if (left > s->hwm) s->flags |= SG_F_WANT_DRAIN;
  return left;
}

void sg_flush(socket* s) {
  if (!(s->flags & SG_F_CONNECTED) || (s->flags & SG_F_FAILED)) return;
  uint32_t left = pending(s);
  if (left == 0) {
    after_drain(s);
    return;
  }
  struct iovec v = {s->wbuf + s->woff, left};
  ssize_t w = sys_writev(s->fd, &v, 1);
  if (w < 0 && w != -EAGAIN) {
    fail(s, static_cast<int>(w), SG_SYS_WRITE);
    return;
  }
  if (w > 0) {
    s->ctr[SG_CTR_BYTES_WRITTEN] += static_cast<uint64_t>(w);
    s->ctr[SG_CTR_SEND_CALLS]++;
    s->woff += static_cast<uint32_t>(w);
  }
  left = pending(s);
  s->ctr[SG_CTR_PENDING] = left;
  if (left == 0) {
    after_drain(s);
  } else if (!(s->flags & SG_F_WAIT_OUT)) {
    s->flags |= SG_F_WAIT_OUT;
    sg_update_interest(s);
  }
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
    uint8_t* dst = sg_loop_slab(lp, 16 * 1024, &avail);
    // Out of slab or record space: stop; level-triggered readiness brings this socket back next batch.
    if (!dst) break;
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
  for (int i = 0; i < 64 && (s->flags & SG_F_READING) && !(s->flags & SG_F_FAILED); i++) {
    uint32_t avail;
    uint8_t* dst = sg_loop_slab(lp, 64 * 1024 + SG_DGRAM_HDR, &avail);
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
  if ((flags & (SG_IN | SG_HUP | SG_ERR)) && (s->flags & SG_F_READING) && !(s->flags & SG_F_EOF)) {
    if (s->flags & SG_F_STREAM) read_stream(s);
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
    if (s->interest != kUnwatched) {
      sg_poll_del(s->lp->pfd, s->fd, s->interest);
      s->interest = kUnwatched;
    }
  }
}

void sg_close(socket* s) {
  // Bytes already accepted by write() leave before the descriptor closes: with net they would usually have
  // been written synchronously, so `write(); destroy()` must not lose them here just because we coalesce.
  if ((s->flags & SG_F_CONNECTED) && !(s->flags & SG_F_FAILED) && pending(s) > 0) {
    struct iovec v = {s->wbuf + s->woff, pending(s)};
    ssize_t w = sys_writev(s->fd, &v, 1);
    if (w > 0) {
      s->ctr[SG_CTR_BYTES_WRITTEN] += static_cast<uint64_t>(w);
      s->ctr[SG_CTR_SEND_CALLS]++;
    }
  }
  sg_loop_unregister(s->lp, s);
  sys_close(s->fd);
  free(s->wbuf);
  free(s);
}

int sg_detach(socket* s) {
  int fd = s->fd;
  sg_loop_unregister(s->lp, s);
  free(s->wbuf);
  free(s);
  return fd;
}

}  // namespace sg
