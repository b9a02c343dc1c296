/*
 * The reference server for every benchmark arm: one thread, one epoll set, non-blocking sockets.
 * It stays the same while the client changes, so differences between arms are the client's.
 *
 *   server <echo|pingpong|sink> <ipv4> <port> [et|lt]
 *
 * Prints "LISTENING <port>" once bound (port 0 picks one), then serves until SIGTERM/SIGINT.
 * echo/pingpong write back what they read; sink discards. Reads are large (256 KiB) so the
 * server is never the side that makes many small syscalls.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF (256 * 1024)
#define MAX_EVENTS 512

enum mode { MODE_ECHO, MODE_SINK };

/* Pending echo output of one connection: only used when the peer does not read fast enough. */
struct conn {
  char *pending;
  size_t len, off, cap;
};

static volatile sig_atomic_t stop;
static struct conn *conns;
static int max_fds;
static int epfd;
static int edge = 1;
static enum mode mode;
static char rbuf[READ_BUF];

static void on_signal(int sig) { (void)sig; stop = 1; }

static void set_interest(int fd, unsigned ev, int op) {
  struct epoll_event e = { .events = ev | (edge ? EPOLLET : 0), .data.fd = fd };
  epoll_ctl(epfd, op, fd, &e);
}

static void conn_close(int fd) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(conns[fd].pending);
  memset(&conns[fd], 0, sizeof conns[fd]);
}

/* Returns 0 when all pending output left, 1 when the socket is full again, -1 on error. */
static int flush_pending(int fd) {
  struct conn *c = &conns[fd];
  while (c->off < c->len) {
    ssize_t n = send(fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n > 0) { c->off += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    return -1;
  }
  c->off = c->len = 0;
  return 0;
}

static int queue_pending(int fd, const char *p, size_t n) {
  struct conn *c = &conns[fd];
  if (c->len + n > c->cap) {
    size_t cap = c->cap ? c->cap : 65536;
    while (cap < c->len + n) cap *= 2;
    char *np = realloc(c->pending, cap);
    if (!np) return -1;
    c->pending = np;
    c->cap = cap;
  }
  memcpy(c->pending + c->len, p, n);
  c->len += n;
  return 0;
}

/* Echo what was read; once output backs up, stop reading until it drains (bounded memory). */
static void on_readable(int fd) {
  struct conn *c = &conns[fd];
  for (int rounds = 0; rounds < 64; rounds++) {
    if (c->len) return; /* waiting for EPOLLOUT */
    ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
    if (n == 0) { conn_close(fd); return; }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      conn_close(fd);
      return;
    }
    if (mode == MODE_SINK) continue;
    size_t off = 0;
    while (off < (size_t)n) {
      ssize_t w = send(fd, rbuf + off, (size_t)n - off, MSG_NOSIGNAL);
      if (w > 0) { off += (size_t)w; continue; }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (queue_pending(fd, rbuf + off, (size_t)n - off) < 0) { conn_close(fd); return; }
        set_interest(fd, EPOLLOUT, EPOLL_CTL_MOD);
        return;
      }
      conn_close(fd);
      return;
    }
  }
  /* Bounded: in edge mode an unread rest would never be reported again, so ask again. */
  if (edge) set_interest(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}

static void on_writable(int fd) {
  int r = flush_pending(fd);
  if (r < 0) { conn_close(fd); return; }
  if (r > 0) return;
  set_interest(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
  on_readable(fd);
}

static void on_accept(int lfd) {
  for (int i = 0; i < 1024; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; /* EAGAIN, or EMFILE: the client sees a refused/slow connect */
    if (fd >= max_fds) { close(fd); continue; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_interest(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD);
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s <echo|pingpong|sink> <ipv4> <port> [et|lt]\n", argv[0]);
    return 2;
  }
  if (!strcmp(argv[1], "sink")) mode = MODE_SINK;
  else if (!strcmp(argv[1], "echo") || !strcmp(argv[1], "pingpong")) mode = MODE_ECHO;
  else { fprintf(stderr, "unknown mode %s\n", argv[1]); return 2; }
  if (argc > 4 && !strcmp(argv[4], "lt")) edge = 0;

  struct sigaction sa = { .sa_handler = on_signal };
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  max_fds = (int)sysconf(_SC_OPEN_MAX);
  if (max_fds <= 0) max_fds = 65536;
  conns = calloc((size_t)max_fds, sizeof *conns);

  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
  if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) { fprintf(stderr, "bad address\n"); return 2; }
  /* Only loopback: the bench must never listen on a reachable interface. */
  if ((ntohl(addr.sin_addr.s_addr) >> 24) != 127) { fprintf(stderr, "not a loopback address\n"); return 2; }

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
    perror("bind/listen");
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr *)&addr, &alen);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event le = { .events = EPOLLIN, .data.fd = lfd };
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &le);

  printf("LISTENING %d\n", ntohs(addr.sin_port));
  fflush(stdout);

  struct epoll_event evs[MAX_EVENTS];
  while (!stop) {
    int n = epoll_wait(epfd, evs, MAX_EVENTS, 200);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      unsigned e = evs[i].events;
      if (fd == lfd) { on_accept(lfd); continue; }
      if (e & EPOLLOUT) { on_writable(fd); continue; }
      if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(fd);
    }
  }
  return 0;
}
