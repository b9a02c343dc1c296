// Readiness backend: kqueue (macOS, BSD). Read and write interest are separate filters; an event carries
// one of them, so the loop may see a socket twice in one batch, which the socket layer tolerates.
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__) || \
    defined(__DragonFly__)
#include "sg.h"

#include <errno.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

namespace sg {

int sg_poll_create() {
  int fd = kqueue();
  return fd < 0 ? -errno : fd;
}

static int apply(int pfd, int fd, uint32_t old_interest, uint32_t interest, uint64_t token) {
  struct kevent ch[2];
  int n = 0;
  void* udata = reinterpret_cast<void*>(static_cast<uintptr_t>(token));
  if ((old_interest ^ interest) & SG_IN)
    EV_SET(&ch[n++], fd, EVFILT_READ, (interest & SG_IN) ? EV_ADD : EV_DELETE, 0, 0, udata);
  if ((old_interest ^ interest) & SG_OUT)
    EV_SET(&ch[n++], fd, EVFILT_WRITE, (interest & SG_OUT) ? EV_ADD : EV_DELETE, 0, 0, udata);
  if (n == 0) return 0;
  return kevent(pfd, ch, n, nullptr, 0, nullptr) < 0 ? -errno : 0;
}

int sg_poll_add(int pfd, int fd, uint32_t interest, uint64_t token) {
  return apply(pfd, fd, 0, interest, token);
}

int sg_poll_mod(int pfd, int fd, uint32_t old_interest, uint32_t interest, uint64_t token) {
  return apply(pfd, fd, old_interest, interest, token);
}

int sg_poll_del(int pfd, int fd, uint32_t old_interest) {
  return apply(pfd, fd, old_interest, 0, 0);
}

int sg_poll_wait(int pfd, poll_event* out, int max) {
  constexpr int kMax = 256;
  struct kevent evs[kMax];
  if (max > kMax) max = kMax;
  struct timespec zero = {0, 0};
  int n;
  do n = kevent(pfd, nullptr, 0, evs, max, &zero);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  for (int i = 0; i < n; i++) {
    uint32_t f = 0;
    if (evs[i].filter == EVFILT_READ) f |= SG_IN;
    if (evs[i].filter == EVFILT_WRITE) f |= SG_OUT;
    if (evs[i].flags & EV_EOF) f |= SG_HUP;
    if (evs[i].flags & EV_ERROR) f |= SG_ERR;
    out[i].token = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(evs[i].udata));
    out[i].flags = f;
  }
  return n;
}

}  // namespace sg
#endif
