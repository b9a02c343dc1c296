/*
 * The limit: what a C program does against the same server with the same parameters as the Node
 * arms. One thread; blocking sockets where the scenario is one connection in lock-step, epoll
 * otherwise. Prints one JSON object on stdout.
 *
 *   client <scenario> key=value...
 *   scenarios: bulk | echo | pingpong | connect | idle
 *   keys: host port seconds conns window size chunk inflight count
 *         warmupBytes warmupSeconds warmupRtts
 *
 * echo keeps `window` messages of `size` bytes outstanding per connection. refill=each (default)
 * sends, with one send per read, as many messages as just came back (docs/performance.md#method; the
 * window may split into several pieces in flight). refill=window sends the whole window with one
 * send and the next one once all of it came back, so every arm's batches have the same size.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int port;
static double seconds = 3, warmup_seconds = 0.5;
static long conns = 1, window = 64, size = 64, chunk = 65536, inflight = 1, count = 10000;
static long long warmup_bytes = 64LL << 20;
static long warmup_rtts = 2000;
static int refill_each = 1;
static struct sockaddr_in addr;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* User + system CPU time of this process, ns: reported per unit of work beside the rates. */
static double cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ((double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)) * 1e3;
}

static void die(const char *what) {
  printf("{\"error\":\"%s: %s\"}\n", what, strerror(errno));
  exit(1);
}

static int open_socket(int nonblock) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int connect_blocking(void) {
  int fd = open_socket(0);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
  return fd;
}

static void bulk(void) {
  int fd = connect_blocking();
  char *buf = calloc(1, (size_t)chunk);
  long long sent = 0, measured = 0;
  double t0 = 0, t1 = 0, c0 = 0;
  int warm = 0;
  for (;;) {
    ssize_t n = send(fd, buf, (size_t)chunk, MSG_NOSIGNAL);
    if (n < 0) { if (errno == EINTR) continue; die("send"); }
    sent += n;
    if (!warm) {
      if (sent >= warmup_bytes) { warm = 1; t0 = now(); c0 = cpu_ns(); sent = 0; }
      continue;
    }
    t1 = now();
    if (t1 - t0 >= seconds) { measured = sent; break; }
  }
  close(fd);
  printf("{\"scenario\":\"bulk\",\"bytes\":%lld,\"seconds\":%.6f,\"value\":%.1f,\"unit\":\"B/s\",\"cpuNsPerUnit\":%.1f}\n",
         measured, t1 - t0, (double)measured / (t1 - t0), (cpu_ns() - c0) / ((double)measured / 65536));
}

struct econn { int fd; long long recvd; long long unsent; };

static void echo(void) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct econn *cs = calloc((size_t)conns, sizeof *cs);
  char *out = calloc((size_t)window, (size_t)size);
  static char in[256 * 1024];
  for (long i = 0; i < conns; i++) {
    cs[i].fd = connect_blocking();
    fcntl(cs[i].fd, F_SETFL, O_NONBLOCK);
    struct epoll_event e = { .events = EPOLLIN, .data.u64 = (uint64_t)i };
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &e);
    cs[i].unsent = window * size;
  }
  long long msgs = 0, base = 0;
  double start = now(), t0 = 0, t = start, c0 = 0;
  int warm = 0;
  struct epoll_event evs[256];
  /* Prime every connection with one send of the whole window. */
  for (long i = 0; i < conns; i++) {
    ssize_t n = send(cs[i].fd, out, (size_t)cs[i].unsent, MSG_NOSIGNAL);
    if (n > 0) cs[i].unsent -= n;
  }
  for (;;) {
    int n = epoll_wait(ep, evs, 256, 1000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("epoll_wait (stalled)");
    for (int k = 0; k < n; k++) {
      struct econn *c = &cs[evs[k].data.u64];
      for (;;) {
        ssize_t r = recv(c->fd, in, sizeof in, 0);
        if (r > 0) {
          long long before = c->recvd / size;
          c->recvd += r;
          long long done = c->recvd / size - before;
          msgs += done;
          if (refill_each) c->unsent += done * size;
          else if (c->recvd == window * size) { c->recvd = 0; c->unsent = window * size; }
          continue;
        }
        if (r == 0) die("server closed");
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        die("recv");
      }
      /* One send per batch; window*size is far below the socket buffer, so it does not block. */
      while (c->unsent > 0) {
        ssize_t w = send(c->fd, out, (size_t)c->unsent, MSG_NOSIGNAL);
        if (w > 0) { c->unsent -= w; continue; }
        if (w < 0 && errno == EINTR) continue;
        break; /* EAGAIN: retried after the next read, the window guarantees one */
      }
    }
    t = now();
    if (!warm) {
      if (t - start >= warmup_seconds) { warm = 1; t0 = t; base = msgs; c0 = cpu_ns(); }
      continue;
    }
    if (t - t0 >= seconds) break;
  }
  for (long i = 0; i < conns; i++) close(cs[i].fd);
  long long measured = msgs - base;
  printf("{\"scenario\":\"echo\",\"conns\":%ld,\"window\":%ld,\"messages\":%lld,\"seconds\":%.6f,"
         "\"value\":%.1f,\"unit\":\"msg/s\",\"cpuNsPerUnit\":%.1f}\n",
         conns, window, measured, t - t0, (double)measured / (t - t0), (cpu_ns() - c0) / (double)measured);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void pingpong(void) {
  int fd = connect_blocking();
  char buf[4096] = {0};
  size_t cap = 4 << 20, ns = 0;
  double *samples = malloc(cap * sizeof *samples);
  double t0 = 0, end = 0, c0 = 0;
  for (long i = 0;; i++) {
    double a = now();
    if (send(fd, buf, (size_t)size, MSG_NOSIGNAL) != size) die("send");
    long got = 0;
    while (got < size) {
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r <= 0) { if (r < 0 && errno == EINTR) continue; die("recv"); }
      got += r;
    }
    double b = now();
    if (i < warmup_rtts) { t0 = b; c0 = cpu_ns(); continue; }
    if (ns < cap) samples[ns++] = (b - a) * 1e6;
    end = b;
    if (b - t0 >= seconds || ns == cap) break;
  }
  close(fd);
  qsort(samples, ns, sizeof *samples, cmp_double);
  printf("{\"scenario\":\"pingpong\",\"rtts\":%zu,\"seconds\":%.6f,\"p50\":%.3f,\"p99\":%.3f,"
         "\"value\":%.3f,\"unit\":\"us\",\"cpuNsPerUnit\":%.1f}\n",
         ns, end - t0, samples[ns / 2], samples[(size_t)(ns * 0.99)], samples[ns / 2], (cpu_ns() - c0) / (double)ns);
}

/* connect + close with `inflight` attempts outstanding; a completed handshake counts. */
static void connect_rate(void) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  long long done = 0, base = 0;
  double start = now(), t0 = 0, t = start, c0 = 0;
  int warm = 0;
  struct epoll_event evs[256];
  for (long i = 0; i < inflight; i++) {
    int fd = open_socket(1);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) die("connect");
    struct epoll_event e = { .events = EPOLLOUT, .data.fd = fd };
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  }
  for (;;) {
    int n = epoll_wait(ep, evs, 256, 1000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("epoll_wait (stalled)");
    for (int k = 0; k < n; k++) {
      int fd = evs[k].data.fd, err = 0;
      socklen_t l = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
      if (err) { errno = err; die("connect"); }
      close(fd);
      done++;
      fd = open_socket(1);
      if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) die("connect");
      struct epoll_event e = { .events = EPOLLOUT, .data.fd = fd };
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    }
    t = now();
    if (!warm) {
      if (t - start >= warmup_seconds) { warm = 1; t0 = t; base = done; c0 = cpu_ns(); }
      continue;
    }
    if (t - t0 >= seconds) break;
  }
  long long measured = done - base;
  printf("{\"scenario\":\"connect\",\"inflight\":%ld,\"connections\":%lld,\"seconds\":%.6f,"
         "\"value\":%.1f,\"unit\":\"conn/s\",\"cpuNsPerUnit\":%.1f}\n",
         inflight, measured, t - t0, (double)measured / (t - t0), (cpu_ns() - c0) / (double)measured);
}

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) { if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0; fclose(f); }
  return res * sysconf(_SC_PAGESIZE);
}

/* Opens `count` idle connected sockets, `inflight` handshakes at a time; reports RSS growth. */
static void idle(void) {
  int *fds = calloc((size_t)count, sizeof *fds);
  long before = rss_bytes();
  int ep = epoll_create1(EPOLL_CLOEXEC);
  long started = 0, connected = 0, pending = 0;
  struct epoll_event evs[256];
  while (connected < count) {
    while (pending < inflight && started < count) {
      int fd = open_socket(1);
      if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) die("connect");
      struct epoll_event e = { .events = EPOLLOUT, .data.fd = fd };
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
      fds[started++] = fd;
      pending++;
    }
    int n = epoll_wait(ep, evs, 256, 5000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("epoll_wait (stalled)");
    for (int k = 0; k < n; k++) {
      int err = 0;
      socklen_t l = sizeof err;
      getsockopt(evs[k].data.fd, SOL_SOCKET, SO_ERROR, &err, &l);
      if (err) { errno = err; die("connect"); }
      epoll_ctl(ep, EPOLL_CTL_DEL, evs[k].data.fd, NULL);
      pending--;
      connected++;
    }
  }
  long after = rss_bytes();
  for (long i = 0; i < count; i++) close(fds[i]);
  printf("{\"scenario\":\"idle\",\"sockets\":%ld,\"rssBytes\":%ld,\"rssPerSocket\":%.1f,"
         "\"heapPerSocket\":0,\"value\":%.1f,\"unit\":\"B\"}\n",
         count, after - before, (double)(after - before) / (double)count,
         (double)(after - before) / (double)count);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s <bulk|echo|pingpong|connect|idle> key=value...\n", argv[0]); return 2; }
  signal(SIGPIPE, SIG_IGN);
  for (int i = 2; i < argc; i++) {
    char *eq = strchr(argv[i], '=');
    if (!eq) continue;
    *eq = 0;
    const char *k = argv[i], *v = eq + 1;
    if (!strcmp(k, "host")) host = v;
    else if (!strcmp(k, "port")) port = atoi(v);
    else if (!strcmp(k, "seconds")) seconds = atof(v);
    else if (!strcmp(k, "conns")) conns = atol(v);
    else if (!strcmp(k, "window")) window = atol(v);
    else if (!strcmp(k, "size")) size = atol(v);
    else if (!strcmp(k, "chunk")) chunk = atol(v);
    else if (!strcmp(k, "inflight")) inflight = atol(v);
    else if (!strcmp(k, "count")) count = atol(v);
    else if (!strcmp(k, "warmupBytes")) warmup_bytes = atoll(v);
    else if (!strcmp(k, "warmupSeconds")) warmup_seconds = atof(v);
    else if (!strcmp(k, "warmupRtts")) warmup_rtts = atol(v);
    else if (!strcmp(k, "refill")) refill_each = !strcmp(v, "each");
  }
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 || (ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
    printf("{\"error\":\"host must be an IPv4 loopback address\"}\n");
    return 2;
  }
  const char *s = argv[1];
  if (!strcmp(s, "bulk")) bulk();
  else if (!strcmp(s, "echo")) echo();
  else if (!strcmp(s, "pingpong")) pingpong();
  else if (!strcmp(s, "connect")) connect_rate();
  else if (!strcmp(s, "idle")) idle();
  else { printf("{\"error\":\"unknown scenario\"}\n"); return 2; }
  return 0;
}
