// Descriptors across processes: a Unix stream socket between a process and the local broker, messages framed by a
// 4-byte length, a descriptor riding on the first byte of a message (SCM_RIGHTS). Every call blocks, bounded by
// the socket's send/receive timeouts: the broker answers at once, and a stalled peer costs a timeout, not a hang.
// Both ends check who is on the other side (peer credentials): only processes of the same user are served.
#include "sg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace sg {

namespace {

int neg() { return errno == EWOULDBLOCK ? -EAGAIN : -errno; }

int make_addr(const char* path, struct sockaddr_un* sa) {
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof(sa->sun_path)) return -ENAMETOOLONG;
  memcpy(sa->sun_path, path, n);
  return 0;
}

int unix_socket() {
#if defined(SOCK_CLOEXEC)
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
#else
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
  if (fd < 0) return neg();
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  return fd;
}

void set_timeouts(int fd, int ms) {
  struct timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// The user on the other end of a connected Unix socket, or -errno.
int peer_uid(int fd, uid_t* uid) {
#if defined(SO_PEERCRED)
  struct ucred cr;
  socklen_t len = sizeof(cr);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) return neg();
  *uid = cr.uid;
  return 0;
#else
  gid_t gid;
  if (getpeereid(fd, uid, &gid) < 0) return neg();
  return 0;
#endif
}

int same_user(int fd) {
  uid_t uid = 0;
  int r = peer_uid(fd, &uid);
  if (r < 0) return r;
  return uid == geteuid() ? 0 : -EACCES;
}

int send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
#ifdef MSG_NOSIGNAL
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
#else
    ssize_t w = ::send(fd, p, n, 0);
#endif
    if (w < 0) {
      if (errno == EINTR) continue;
      return neg();
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

int recv_all(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return neg();
    }
    if (r == 0) return -EPIPE;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return 0;
}

}  // namespace

int sg_unix_listen(const char* path) {
  struct sockaddr_un sa;
  int r = make_addr(path, &sa);
  if (r < 0) return r;
  int fd = unix_socket();
  if (fd < 0) return fd;
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)) < 0) {
    r = neg();
    ::close(fd);
    return r;
  }
  // Private before anyone can connect: listen() comes after.
  if (chmod(path, 0600) < 0 || ::listen(fd, 64) < 0) {
    r = neg();
    ::close(fd);
    unlink(path);
    return r;
  }
  return fd;
}

int sg_unix_connect(const char* path, int timeout_ms) {
  struct sockaddr_un sa;
  int r = make_addr(path, &sa);
  if (r < 0) return r;
  int fd = unix_socket();
  if (fd < 0) return fd;
  set_timeouts(fd, timeout_ms);
  do r = ::connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa));
  while (r < 0 && errno == EINTR);
  if (r < 0) r = neg();
  // A socket file of another user is not our broker, whatever it answers.
  if (r == 0) r = same_user(fd);
  if (r < 0) {
    ::close(fd);
    return r;
  }
  return fd;
}

int sg_unix_accept(int lfd, int wait_ms, int timeout_ms) {
  struct pollfd p = {lfd, POLLIN, 0};
  int r;
  do r = ::poll(&p, 1, wait_ms);
  while (r < 0 && errno == EINTR);
  if (r < 0) return neg();
  if (r == 0) return -EAGAIN;
  int fd;
  do fd = ::accept(lfd, nullptr, nullptr);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return neg();
  fcntl(fd, F_SETFD, FD_CLOEXEC);
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  set_timeouts(fd, timeout_ms);
  r = same_user(fd);
  if (r < 0) {
    ::close(fd);
    return r;
  }
  return fd;
}

int sg_unix_send(int fd, const char* p, uint32_t n, int pass_fd) {
  unsigned char hdr[4] = {static_cast<unsigned char>(n >> 24), static_cast<unsigned char>(n >> 16),
                          static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)};
  struct iovec v = {hdr, sizeof(hdr)};
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int))];
  if (pass_fd >= 0) {
    memset(ctl, 0, sizeof(ctl));
    m.msg_control = ctl;
    m.msg_controllen = sizeof(ctl);
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  ssize_t w;
#ifdef MSG_NOSIGNAL
  do w = ::sendmsg(fd, &m, MSG_NOSIGNAL);
#else
  do w = ::sendmsg(fd, &m, 0);
#endif
  while (w < 0 && errno == EINTR);
  if (w < 0) return neg();
  if (w < static_cast<ssize_t>(sizeof(hdr))) {
    int r = send_all(fd, reinterpret_cast<char*>(hdr) + w, sizeof(hdr) - static_cast<size_t>(w));
    if (r < 0) return r;
  }
  return send_all(fd, p, n);
}

int sg_unix_recv(int fd, char** out, uint32_t* len, int* got_fd) {
  *out = nullptr;
  *len = 0;
  *got_fd = -1;
  unsigned char hdr[4];
  struct iovec v = {hdr, sizeof(hdr)};
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)];
  m.msg_control = ctl;
  m.msg_controllen = sizeof(ctl);
  ssize_t r;
#ifdef MSG_CMSG_CLOEXEC
  do r = ::recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
#else
  do r = ::recvmsg(fd, &m, 0);
#endif
  while (r < 0 && errno == EINTR);
  if (r < 0) return neg();
  if (r == 0) return -EPIPE;
  // Every descriptor that arrived is ours to close, even those a well-behaved peer would never send.
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; i++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (*got_fd < 0) *got_fd = f;
      else ::close(f);
    }
  }
  int e = 0;
  if (m.msg_flags & MSG_CTRUNC) e = -EPROTO;
  if (e == 0 && r < static_cast<ssize_t>(sizeof(hdr))) e = recv_all(fd, reinterpret_cast<char*>(hdr) + r, sizeof(hdr) - static_cast<size_t>(r));
  uint32_t n = 0;
  if (e == 0) {
    n = (uint32_t(hdr[0]) << 24) | (uint32_t(hdr[1]) << 16) | (uint32_t(hdr[2]) << 8) | uint32_t(hdr[3]);
    if (n > SG_PASS_MAX) e = -EMSGSIZE;
  }
  char* buf = nullptr;
  if (e == 0 && n > 0) {
    buf = static_cast<char*>(malloc(n));
    if (!buf) e = -ENOMEM;
    else e = recv_all(fd, buf, n);
  }
  if (e < 0) {
    free(buf);
    if (*got_fd >= 0) ::close(*got_fd);
    *got_fd = -1;
    return e;
  }
  *out = buf;
  *len = n;
  return 0;
}

}  // namespace sg
