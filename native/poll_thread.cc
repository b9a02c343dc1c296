// Thread backend: a helper thread waits until the loop's poll set is ready and wakes the JS thread with one
// threadsafe-function call; the JS thread drains the set (sg_loop_poll) and acknowledges, and only then does
// the helper wait again. The set is level-triggered, so whatever JS left unread is reported by the next wait.
//
// The helper only waits: it never reads a socket or writes a record, so the core's records, slab, staging and
// counters stay single-threaded. It exists for runtimes whose libuv cannot watch descriptors (Bun's uv_poll_*
// abort, Deno's uv_poll fires once), and it calls no uv_* function (Deno does not even export uv_prepare_init).
//
// Teardown runs in a synchronous environment cleanup hook, never an async one: in Deno napi_async_destroy
// inside an async cleanup hook aborts and removing the hook then frees it twice.
#include "sg.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif

#include <new>

namespace sg {

struct thread_poller {
  loop* lp;
  pthread_t thread;
  napi_threadsafe_function tsfn;
  // Wake-up descriptor: an eventfd on Linux (both ends), else a pipe. Only teardown writes it.
  int wake_r;
  int wake_w;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool waiting_ack;  // a wake-up is on its way to JS (or being handled there)
  bool stop;
  bool cleaned;      // the cleanup hook has run
  bool finalized;    // the threadsafe function is gone
};

static void on_thread_wake(napi_env env, napi_value fn, void* context, void* data) {
  // A null env means the call is being discarded at teardown: the loop may be gone, touch nothing.
  if (env == nullptr) return;
  auto* tp = static_cast<thread_poller*>(context);
  loop* lp = tp->lp;
  if (!lp->closing) sg_loop_poll(lp);
  sg_thread_ack(lp);
}

void sg_thread_ack(loop* lp) {
  thread_poller* tp = lp->tp;
  pthread_mutex_lock(&tp->mu);
  tp->waiting_ack = false;
  pthread_cond_signal(&tp->cv);
  pthread_mutex_unlock(&tp->mu);
}

static void* thread_main(void* arg) {
  auto* tp = static_cast<thread_poller*>(arg);
  int pfd = tp->lp->pfd;
  for (;;) {
    struct pollfd p[2] = {{pfd, POLLIN, 0}, {tp->wake_r, POLLIN, 0}};
    int n = poll(p, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    pthread_mutex_lock(&tp->mu);
    bool stop = tp->stop || n < 0 || (p[1].revents != 0);
    if (!stop) tp->waiting_ack = true;
    pthread_mutex_unlock(&tp->mu);
    if (stop) break;
    if (napi_call_threadsafe_function(tp->tsfn, nullptr, napi_tsfn_nonblocking) != napi_ok) break;
    pthread_mutex_lock(&tp->mu);
    while (tp->waiting_ack && !tp->stop) pthread_cond_wait(&tp->cv, &tp->mu);
    stop = tp->stop;
    pthread_mutex_unlock(&tp->mu);
    if (stop) break;
  }
  return nullptr;
}

// Stops the helper wherever it waits (in poll, or for an acknowledgement) and joins it.
static void stop_thread(thread_poller* tp) {
  pthread_mutex_lock(&tp->mu);
  tp->stop = true;
  pthread_cond_signal(&tp->cv);
  pthread_mutex_unlock(&tp->mu);
  uint64_t one = 1;
  ssize_t w;
  do w = write(tp->wake_w, &one, tp->wake_w == tp->wake_r ? sizeof(one) : 1);
  while (w < 0 && errno == EINTR);
  pthread_join(tp->thread, nullptr);
}

static void free_poller(thread_poller* tp) {
  if (tp->wake_r >= 0) close(tp->wake_r);
  if (tp->wake_w >= 0 && tp->wake_w != tp->wake_r) close(tp->wake_w);
  pthread_mutex_destroy(&tp->mu);
  pthread_cond_destroy(&tp->cv);
  delete tp;
}

// Whichever of the cleanup hook and the threadsafe function's finalizer comes last frees the loop: runtimes
// differ in their order, and Deno and Bun may not finalize at all at process exit (the memory then goes with
// the process).
static void on_tsfn_finalize(napi_env env, void* data, void* hint) {
  auto* tp = static_cast<thread_poller*>(data);
  if (tp->lp == nullptr) {
    // Created for a start that failed: there is no loop to free.
    free_poller(tp);
    return;
  }
  tp->finalized = true;
  if (!tp->cleaned) return;
  loop* lp = tp->lp;
  lp->tp = nullptr;
  free_poller(tp);
  sg_loop_release(lp);
}

static void on_env_cleanup(void* arg) {
  auto* lp = static_cast<loop*>(arg);
  thread_poller* tp = lp->tp;
  lp->closing = true;
  napi_set_instance_data(lp->env, nullptr, nullptr, nullptr);
  for (uint32_t i = 0; i < lp->nsocks; i++) {
    if (lp->socks[i]) sg_close(lp->socks[i]);
  }
  stop_thread(tp);
  // Descriptors go now, not with the memory: a runtime that never finalizes the threadsafe function (Deno at a
  // worker's end) would otherwise leak them for the rest of the process.
  sys_close(lp->pfd);
  lp->pfd = -1;
  if (tp->wake_w != tp->wake_r) close(tp->wake_w);
  close(tp->wake_r);
  tp->wake_r = tp->wake_w = -1;
  tp->cleaned = true;
  if (tp->finalized) {
    on_tsfn_finalize(lp->env, tp, nullptr);
    return;
  }
  // May finalize at once (and free the loop): nothing touches lp after it.
  napi_release_threadsafe_function(tp->tsfn, napi_tsfn_abort);
}

int sg_thread_start(loop* lp) {
  napi_env env = lp->env;
  auto* tp = new (std::nothrow) thread_poller();
  if (!tp) return -ENOMEM;
  tp->lp = lp;
  tp->wake_r = tp->wake_w = -1;
  pthread_mutex_init(&tp->mu, nullptr);
  pthread_cond_init(&tp->cv, nullptr);
#if defined(__linux__)
  tp->wake_r = tp->wake_w = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (tp->wake_r < 0) {
    int r = -errno;
    tp->wake_r = tp->wake_w = -1;
    free_poller(tp);
    return r;
  }
#else
  int fds[2];
  if (pipe(fds) < 0) {
    int r = -errno;
    free_poller(tp);
    return r;
  }
  tp->wake_r = fds[0];
  tp->wake_w = fds[1];
#endif

  napi_value name;
  if (napi_create_string_utf8(env, "SOCKGUARD_LOOP", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, tp, on_tsfn_finalize, tp, on_thread_wake,
                                      &tp->tsfn) != napi_ok) {
    free_poller(tp);
    return -ENOMEM;
  }
  // Only a ref'd socket keeps the process alive, as with the uv backend's handles.
  napi_unref_threadsafe_function(env, tp->tsfn);

  // The helper takes no signals: they belong to the JS thread.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = pthread_create(&tp->thread, nullptr, thread_main, tp);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (r != 0) {
    // Not started: the threadsafe function finalizes without a loop to free.
    tp->lp = nullptr;
    napi_release_threadsafe_function(tp->tsfn, napi_tsfn_abort);
    return -r;
  }
  lp->tp = tp;
  if (napi_add_env_cleanup_hook(env, on_env_cleanup, lp) != napi_ok) {
    // Without the hook the thread could outlive the environment: stop it now.
    stop_thread(tp);
    lp->tp = nullptr;
    tp->lp = nullptr;
    napi_release_threadsafe_function(tp->tsfn, napi_tsfn_abort);
    return -ENOMEM;
  }
  return 0;
}

void sg_thread_set_ref(loop* lp, bool ref) {
  if (!lp->tp) return;
  if (ref) napi_ref_threadsafe_function(lp->env, lp->tp->tsfn);
  else napi_unref_threadsafe_function(lp->env, lp->tp->tsfn);
}

}  // namespace sg
