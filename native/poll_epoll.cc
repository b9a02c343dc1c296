// Readiness backend: epoll. Level-triggered, so a socket that still has bytes after one batch (the slab
// filled up, or the per-socket read budget ran out) is simply reported again in the next batch.
#if defined(__linux__)
#include "sg.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

namespace sg {

static inline uint32_t to_epoll(uint32_t interest) {
  uint32_t ev = 0;
  if (interest & SG_IN) ev |= EPOLLIN | EPOLLRDHUP;
  if (interest & SG_OUT) ev |= EPOLLOUT;
  return ev;
}

int sg_poll_create() {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

int sg_poll_add(int pfd, int fd, uint32_t interest, uint64_t token) {
  struct epoll_event ev;
  ev.events = to_epoll(interest);
  ev.data.u64 = token;
  return epoll_ctl(pfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int sg_poll_mod(int pfd, int fd, uint32_t old_interest, uint32_t interest, uint64_t token) {
  if (old_interest == interest) return 0;
  struct epoll_event ev;
  ev.events = to_epoll(interest);
  ev.data.u64 = token;
  return epoll_ctl(pfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int sg_poll_del(int pfd, int fd, uint32_t old_interest) {
  struct epoll_event ev;  // non-null for kernels before 2.6.9
  return epoll_ctl(pfd, EPOLL_CTL_DEL, fd, &ev) < 0 ? -errno : 0;
}

int sg_poll_wait(int pfd, poll_event* out, int max) {
  constexpr int kMax = 256;
  struct epoll_event evs[kMax];
  if (max > kMax) max = kMax;
  int n;
  do n = epoll_wait(pfd, evs, max, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  for (int i = 0; i < n; i++) {
    uint32_t e = evs[i].events, f = 0;
    if (e & EPOLLIN) f |= SG_IN;
    if (e & EPOLLOUT) f |= SG_OUT;
    if (e & EPOLLERR) f |= SG_ERR;
    if (e & (EPOLLHUP | EPOLLRDHUP)) f |= SG_HUP;
    out[i].token = evs[i].data.u64;
    out[i].flags = f;
  }
  return n;
}

}  // namespace sg
#endif
