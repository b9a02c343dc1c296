// Parked connections: descriptors taken out of a loop by a hand-off and not yet adopted by another one.
//
// The table is process-wide (one per loaded addon, shared by every worker thread), so a token made in one thread
// can be attached in any other. It owns each descriptor and the bytes that travel with it until a take hands both
// over, or a close (idle reclaim) ends them. Entries are few and short-lived: a list under one mutex is enough,
// and it allocates only with malloc, so running out of memory is an answer (-ENOMEM), never an abort.
#include "sg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mutex>

namespace sg {

namespace {

struct parked {
  parked* next;
  char key[SG_PARK_KEY_MAX + 1];
  int fd;
  char* unread;
  uint32_t unread_len;
  int64_t deadline_ms;  // 0: never reclaimed
};

std::mutex park_mu;
parked* park_head = nullptr;
uint32_t park_n = 0;
// The key that signs tokens when an app gives none: one per process, so every thread of it agrees.
unsigned char park_secret_bytes[SG_PARK_SECRET_LEN];
bool park_secret_set = false;

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// A reclaimed descriptor must not block the thread in close() on a linger its first owner set.
void close_parked(parked* p) {
  int on = 0, secs = 0;
  if (sys_get_linger(p->fd, &on, &secs) < 0 || (on && secs > 0)) sys_set_linger(p->fd, 0, 0);
  sys_close(p->fd);
  free(p->unread);
  free(p);
}

// Unlinks every entry whose deadline passed onto `dead` (closed by the caller outside the lock).
void expire_locked(int64_t now, parked** dead) {
  for (parked** pp = &park_head; *pp;) {
    parked* p = *pp;
    if (p->deadline_ms != 0 && p->deadline_ms <= now) {
      *pp = p->next;
      park_n--;
      p->next = *dead;
      *dead = p;
    } else {
      pp = &p->next;
    }
  }
}

int close_all(parked* dead) {
  int n = 0;
  while (dead) {
    parked* next = dead->next;
    close_parked(dead);
    dead = next;
    n++;
  }
  return n;
}

parked** find_locked(const char* key) {
  for (parked** pp = &park_head; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->key, key) == 0) return pp;
  return nullptr;
}

}  // namespace

int sg_park_put(const char* key, int fd, const char* unread, uint32_t len, int64_t idle_ms) {
  if (strlen(key) == 0 || strlen(key) > SG_PARK_KEY_MAX) return -EINVAL;
  auto* p = static_cast<parked*>(calloc(1, sizeof(parked)));
  if (!p) return -ENOMEM;
  if (len > 0) {
    p->unread = static_cast<char*>(malloc(len));
    if (!p->unread) {
      free(p);
      return -ENOMEM;
    }
    memcpy(p->unread, unread, len);
  }
  strcpy(p->key, key);
  p->fd = fd;
  p->unread_len = len;
  int64_t now = now_ms();
  p->deadline_ms = idle_ms > 0 ? now + idle_ms : 0;
  parked* dead = nullptr;
  {
    std::lock_guard<std::mutex> lock(park_mu);
    expire_locked(now, &dead);
    if (find_locked(key)) {
      free(p->unread);
      free(p);
      p = nullptr;
    } else {
      p->next = park_head;
      park_head = p;
      park_n++;
    }
  }
  close_all(dead);
  return p ? 0 : -EEXIST;
}

int sg_park_take(const char* key, int* fd, char** unread, uint32_t* len) {
  parked* dead = nullptr;
  parked* got = nullptr;
  {
    std::lock_guard<std::mutex> lock(park_mu);
    expire_locked(now_ms(), &dead);
    parked** pp = find_locked(key);
    if (pp) {
      got = *pp;
      *pp = got->next;
      park_n--;
    }
  }
  close_all(dead);
  if (!got) return -EPIPE;
  *fd = got->fd;
  *unread = got->unread;
  *len = got->unread_len;
  free(got);
  return 0;
}

int sg_park_close(const char* key) {
  parked* got = nullptr;
  {
    std::lock_guard<std::mutex> lock(park_mu);
    parked** pp = find_locked(key);
    if (pp) {
      got = *pp;
      *pp = got->next;
      park_n--;
    }
  }
  if (!got) return -EPIPE;
  close_parked(got);
  return 0;
}

int sg_park_sweep() {
  parked* dead = nullptr;
  {
    std::lock_guard<std::mutex> lock(park_mu);
    expire_locked(now_ms(), &dead);
  }
  return close_all(dead);
}

uint32_t sg_park_count() {
  std::lock_guard<std::mutex> lock(park_mu);
  return park_n;
}

const unsigned char* sg_park_secret(const unsigned char* candidate) {
  std::lock_guard<std::mutex> lock(park_mu);
  if (!park_secret_set) {
    memcpy(park_secret_bytes, candidate, SG_PARK_SECRET_LEN);
    park_secret_set = true;
  }
  return park_secret_bytes;
}

}  // namespace sg
