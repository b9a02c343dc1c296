// Syscall layer: every function returns >= 0 or a negative errno and retries EINTR where the call is
// restartable. EAGAIN and EWOULDBLOCK are folded into -EAGAIN here and nowhere else.
#include "sg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace sg {

static inline int neg_errno() {
  int e = errno;
  return e == EWOULDBLOCK ? -EAGAIN : -e;
}

int sys_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return neg_errno();
  if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return neg_errno();
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl >= 0 && !(fdfl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC);
  return 0;
}

int sys_socket(int family, int type) {
  int af = family == 6 ? AF_INET6 : AF_INET;
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
  int fd = ::socket(af, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return neg_errno();
#else
  int fd = ::socket(af, type, 0);
  if (fd < 0) return neg_errno();
  int r = sys_set_nonblock(fd);
  if (r < 0) {
    ::close(fd);
    return r;
  }
#endif
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  return fd;
}

int sys_connect(int fd, const struct sockaddr* sa, socklen_t len) {
  int r;
  do r = ::connect(fd, sa, len);
  while (r < 0 && errno == EINTR);
  if (r == 0) return 0;
  // A retried connect after EINTR reports EALREADY: the attempt is still in progress.
  if (errno == EINPROGRESS || errno == EALREADY) return -EINPROGRESS;
  return neg_errno();
}

int sys_bind(int fd, const struct sockaddr* sa, socklen_t len) {
  return ::bind(fd, sa, len) < 0 ? neg_errno() : 0;
}

int sys_disconnect(int fd) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  ss.ss_family = AF_UNSPEC;
  if (::connect(fd, reinterpret_cast<struct sockaddr*>(&ss), sizeof(struct sockaddr)) == 0) return 0;
  // BSDs dissolve the association but still report EAFNOSUPPORT (libuv's uv__udp_disconnect accepts it too).
  if (errno == EAFNOSUPPORT || errno == EINVAL) return 0;
  return neg_errno();
}

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

ssize_t sys_writev(int fd, const struct iovec* iov, int iovcnt) {
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = const_cast<struct iovec*>(iov);
  msg.msg_iovlen = iovcnt;
  ssize_t n;
  do n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? neg_errno() : n;
}

ssize_t sys_sendto(int fd, const void* buf, size_t len, const struct sockaddr* sa, socklen_t salen) {
  ssize_t n;
  do n = ::sendto(fd, buf, len, MSG_NOSIGNAL, sa, salen);
  while (n < 0 && errno == EINTR);
  return n < 0 ? neg_errno() : n;
}

ssize_t sys_recv(int fd, void* buf, size_t len) {
  ssize_t n;
  do n = ::recv(fd, buf, len, 0);
  while (n < 0 && errno == EINTR);
  return n < 0 ? neg_errno() : n;
}

ssize_t sys_recvfrom(int fd, void* buf, size_t len, struct sockaddr_storage* from, socklen_t* fromlen) {
  ssize_t n;
  do {
    *fromlen = sizeof(*from);
    n = ::recvfrom(fd, buf, len, 0, reinterpret_cast<struct sockaddr*>(from), fromlen);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? neg_errno() : n;
}

int sys_so_error(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return neg_errno();
  return -err;
}

int sys_shutdown_wr(int fd) {
  if (::shutdown(fd, SHUT_WR) < 0) {
    // The peer may already have reset the connection; that surfaces as a read error, not here.
    if (errno == ENOTCONN) return 0;
    return neg_errno();
  }
  return 0;
}

void sys_close(int fd) {
  // close() must not be retried on EINTR: the descriptor is released either way on Linux and macOS.
  ::close(fd);
}

int sys_setsockopt_int(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? neg_errno() : 0;
}

int sys_getsockopt_int(int fd, int level, int name, int* value) {
  socklen_t len = sizeof(*value);
  *value = 0;
  return getsockopt(fd, level, name, value, &len) < 0 ? neg_errno() : 0;
}

int sys_set_linger(int fd, int onoff, int seconds) {
  struct linger l;
  l.l_onoff = onoff;
  l.l_linger = seconds;
  return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) < 0 ? neg_errno() : 0;
}

int sys_get_linger(int fd, int* onoff, int* seconds) {
  struct linger l;
  socklen_t len = sizeof(l);
  memset(&l, 0, sizeof(l));
  if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) < 0) return neg_errno();
  *onoff = l.l_onoff;
  *seconds = l.l_linger;
  return 0;
}

int sys_set_keepalive(int fd, int on, int idle_seconds) {
  int r = sys_setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0);
  if (r < 0 || !on || idle_seconds <= 0) return r;
#if defined(TCP_KEEPIDLE)
  return sys_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_seconds);
#elif defined(TCP_KEEPALIVE)
  return sys_setsockopt_int(fd, IPPROTO_TCP, TCP_KEEPALIVE, idle_seconds);
#else
  return 0;
#endif
}

int sys_make_addr(int family, const char* ip, int port, struct sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  if (family == 4) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1) return -EINVAL;
    *len = sizeof(*sin);
    return 0;
  }
  if (family == 6) {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    // A zone id (fe80::1%eth0) selects the interface; inet_pton rejects it, so split it off.
    char buf[64];
    const char* pct = strchr(ip, '%');
    if (pct) {
      size_t n = static_cast<size_t>(pct - ip);
      if (n >= sizeof(buf)) return -EINVAL;
      memcpy(buf, ip, n);
      buf[n] = 0;
      unsigned idx = if_nametoindex(pct + 1);
      if (idx == 0) {
        char* end = nullptr;
        unsigned long v = strtoul(pct + 1, &end, 10);
        if (!end || *end || end == pct + 1) return -EINVAL;
        idx = static_cast<unsigned>(v);
      }
      sin6->sin6_scope_id = idx;
      ip = buf;
    }
    if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) != 1) return -EINVAL;
    *len = sizeof(*sin6);
    return 0;
  }
  return -EAFNOSUPPORT;
}

int sys_name(int fd, int peer, struct sockaddr_storage* ss, socklen_t* len) {
  *len = sizeof(*ss);
  int r = peer ? getpeername(fd, reinterpret_cast<struct sockaddr*>(ss), len)
               : getsockname(fd, reinterpret_cast<struct sockaddr*>(ss), len);
  return r < 0 ? neg_errno() : 0;
}

int sys_addr_text(const struct sockaddr_storage* ss, char* ip, size_t iplen, int* port) {
  if (ss->ss_family == AF_INET) {
    auto* sin = reinterpret_cast<const struct sockaddr_in*>(ss);
    inet_ntop(AF_INET, &sin->sin_addr, ip, static_cast<socklen_t>(iplen));
    *port = ntohs(sin->sin_port);
    return 4;
  }
  if (ss->ss_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<const struct sockaddr_in6*>(ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, ip, static_cast<socklen_t>(iplen));
    *port = ntohs(sin6->sin6_port);
    return 6;
  }
  ip[0] = 0;
  *port = 0;
  return -EAFNOSUPPORT;
}

int sys_describe(int fd, int* type, int* family) {
  int r = sys_getsockopt_int(fd, SOL_SOCKET, SO_TYPE, type);
  if (r < 0) return r;
  struct sockaddr_storage ss;
  socklen_t len;
  r = sys_name(fd, 0, &ss, &len);
  if (r < 0) return r;
  if (ss.ss_family == AF_INET) *family = 4;
  else if (ss.ss_family == AF_INET6) *family = 6;
  else return -EAFNOSUPPORT;
  return 0;
}

}  // namespace sg
