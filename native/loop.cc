// One loop per N-API environment (the main thread and each worker thread): a poll set watched by a single
// uv_poll_t on Node's own loop (uv backend) or by a helper thread (thread backend, poll_thread.cc), one shared
// receive slab, one record buffer, and one JS call per batch.
#include "sg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <new>

namespace sg {

constexpr uint32_t kSlabMargin = SG_SLAB_MARGIN;
constexpr int kWaitBatch = 256;
constexpr int kMaxRounds = 16;
// Records a single read may still need (data, then EOF or an error) below the cap, so reads stop in time.
constexpr uint32_t kReadRecords = 8;
// Flush-and-dispatch passes per settle: writes made in response to a dispatch leave in the same turn, a bounded
// number of times.
constexpr int kSettlePasses = 4;
// Reads that may continue after a dispatch freed the slab, per wake-up: with the 512 KiB slab, one more keeps a
// wake-up within the per-socket read budget (1 MiB).
constexpr int kMoreReads = 1;

static inline loop* from_handle(uv_handle_t* h) { return static_cast<loop*>(h->data); }

socket* sg_loop_find(loop* lp, uint32_t id) { return id < lp->nsocks ? lp->socks[id] : nullptr; }

bool sg_loop_id_ok(const loop* lp, uint32_t id) { return id < lp->nsocks; }

uint64_t* sg_loop_counters(loop* lp, uint32_t id) {
  return lp->chunks[id / SG_CHUNK] + static_cast<size_t>(id % SG_CHUNK) * SG_CTR_SLOTS;
}

struct direct_watch {
  uv_poll_t h;
  loop* lp;
  socket* s;
};

static inline uint64_t token_of(const socket* s) { return (static_cast<uint64_t>(s->gen) << 32) | s->id; }

static void on_direct(uv_poll_t* h, int status, int events);
static void settle(loop* lp);

static void free_direct(uv_handle_t* h) { delete reinterpret_cast<direct_watch*>(h->data); }

static int direct_start(direct_watch* dw, uint32_t interest) {
  if (interest == 0) return uv_poll_stop(&dw->h);
  int ev = 0;
  if (interest & SG_IN) ev |= UV_READABLE | UV_DISCONNECT;
  if (interest & SG_OUT) ev |= UV_WRITABLE;
  return uv_poll_start(&dw->h, ev, on_direct);
}

// Moves the direct socket into the poll set (a second socket arrived, or the direct one leaves).
static void demote(loop* lp, bool keep_watching) {
  socket* s = lp->direct;
  direct_watch* dw = lp->dw;
  lp->direct = nullptr;
  lp->dw = nullptr;
  uv_poll_stop(&dw->h);
  uv_close(reinterpret_cast<uv_handle_t*>(&dw->h), free_direct);
  s->flags &= ~SG_F_DIRECT;
  if (keep_watching && s->interest != 0 && sg_poll_add(lp->pfd, s->fd, s->interest, token_of(s)) < 0) s->interest = 0;
}

int sg_loop_watch(loop* lp, socket* s, uint32_t interest) {
  int r;
  if (s->flags & SG_F_DIRECT) r = direct_start(lp->dw, interest);
  else if (s->interest == 0) r = interest ? sg_poll_add(lp->pfd, s->fd, interest, token_of(s)) : 0;
  else if (interest == 0) r = sg_poll_del(lp->pfd, s->fd, s->interest);
  else r = sg_poll_mod(lp->pfd, s->fd, s->interest, interest, token_of(s));
  if (r == 0) s->interest = interest;
  return r;
}

int sg_loop_register(loop* lp, socket* s, uint32_t interest) {
  s->gen = ++lp->next_gen;
  s->interest = 0;
  if (lp->direct) demote(lp, true);
  int r;
  // The thread backend has no uv handles: its sockets always live in the poll set.
  if (lp->live == 0 && !lp->closing && lp->backend == SG_BACKEND_UV) {
    auto* dw = new (std::nothrow) direct_watch();
    r = dw ? uv_poll_init_socket(lp->uv, &dw->h, s->fd) : -ENOMEM;
    if (r < 0) {
      delete dw;
    } else {
      dw->lp = lp;
      dw->s = s;
      dw->h.data = dw;
      if (!lp->ref) uv_unref(reinterpret_cast<uv_handle_t*>(&dw->h));
      lp->direct = s;
      lp->dw = dw;
      s->flags |= SG_F_DIRECT;
      r = sg_loop_watch(lp, s, interest);
      if (r < 0) demote(lp, false);
    }
    if (r < 0) r = sg_loop_watch(lp, s, interest);
  } else {
    r = sg_loop_watch(lp, s, interest);
  }
  if (r < 0) return r;
  lp->live++;
  lp->socks[s->id] = s;
  return 0;
}

void sg_loop_unregister(loop* lp, socket* s) {
  if (s->flags & SG_F_DIRECT) demote(lp, false);
  else if (s->interest != 0) sg_poll_del(lp->pfd, s->fd, s->interest);
  s->interest = 0;
  lp->live--;
  if (s->id < lp->nsocks && lp->socks[s->id] == s) lp->socks[s->id] = nullptr;
}

// Thread backend: nothing settles the loop once per turn by itself, so the first work of a turn that happens
// outside a settle (a write from a timer, a close from a promise) asks JS for one.
static void want_settle(loop* lp) {
  if (lp->settle_scheduled || lp->settling || lp->closing) return;
  napi_env env = lp->env;
  napi_value fn, recv, later;
  if (napi_get_reference_value(env, lp->schedule_ref, &fn) != napi_ok || !fn) return;
  lp->settle_scheduled = true;
  napi_get_undefined(env, &recv);
  napi_get_boolean(env, false, &later);
  napi_call_function(env, recv, fn, 1, &later, nullptr);
}

void sg_loop_mark_dirty(loop* lp, socket* s) {
  s->flags |= SG_F_DIRTY;
  lp->dirty.push_back(s->id);
  if (lp->backend == SG_BACKEND_THREAD) want_settle(lp);
}

void sg_loop_record(loop* lp, uint32_t id, int32_t type, int32_t a, int32_t b) {
  if (lp->rec_n >= SG_REC_CAP) {
    // The margin rule makes this unreachable (and no JS input can shrink the buffer: loop_init checks its
    // size). Should the rule ever break, the record is counted as lost rather than taking the process down.
    lp->rec_overflow++;
    return;
  }
  int32_t* r = lp->rec + static_cast<size_t>(lp->rec_n) * SG_REC_INTS;
  r[0] = static_cast<int32_t>(id);
  r[1] = type;
  r[2] = a;
  r[3] = b;
  lp->rec_n++;
  if (lp->backend == SG_BACKEND_THREAD) want_settle(lp);
}

uint8_t* sg_loop_slab(loop* lp, uint32_t min, uint32_t* avail) {
  uint32_t left = lp->slab_len - lp->slab_used;
  if (left < min || lp->rec_n + kReadRecords >= SG_REC_CAP) return nullptr;
  *avail = left;
  return lp->slab + lp->slab_used;
}

void sg_loop_commit_slab(loop* lp, uint32_t used) { lp->slab_used += used; }

void sg_loop_dispatch(loop* lp) {
  if (lp->rec_n == 0 || lp->in_dispatch || lp->closing) return;
  napi_env env = lp->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, arg, result;
  napi_get_reference_value(env, lp->fn_ref, &fn);
  napi_get_reference_value(env, lp->resource_ref, &recv);
  uint32_t n = lp->rec_n;
  napi_create_uint32(env, n, &arg);
  lp->in_dispatch = true;
  // The thread backend runs inside a threadsafe-function call or a JS task, which already are callback scopes,
  // and has no async context (Deno aborts destroying one at teardown).
  napi_status st = lp->async_ctx ? napi_make_callback(env, lp->async_ctx, recv, fn, 1, &arg, &result)
                                 : napi_call_function(env, recv, fn, 1, &arg, &result);
  lp->in_dispatch = false;
  if (st != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      // The JS dispatcher isolates handler exceptions itself; anything reaching here is reported the way an
      // exception thrown from a net.Socket callback is: as an uncaught exception, never a crash.
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  // Records appended while JS ran (errors from synchronous calls never add any, but stay safe) move up front.
  if (lp->rec_n > n) {
    memmove(lp->rec, lp->rec + static_cast<size_t>(n) * SG_REC_INTS,
            static_cast<size_t>(lp->rec_n - n) * SG_REC_INTS * sizeof(int32_t));
  }
  lp->rec_n -= n;
  lp->slab_used = 0;
  napi_close_handle_scope(env, scope);
}

static void flush_dirty(loop* lp) {
  if (lp->dirty.empty()) return;
  std::vector<uint32_t> ids;
  ids.swap(lp->dirty);
  size_t i = 0;
  for (; i < ids.size(); i++) {
    if (lp->rec_n + SG_REC_MARGIN > SG_REC_CAP) {
      sg_loop_dispatch(lp);
      // Called from JS during a dispatch, nothing can be delivered yet: the rest waits for the turn's flush.
      if (lp->rec_n + SG_REC_MARGIN > SG_REC_CAP) break;
    }
    socket* s = sg_loop_find(lp, ids[i]);
    if (!s || !(s->flags & SG_F_DIRTY)) continue;
    s->flags &= ~SG_F_DIRTY;
    sg_flush(s);
  }
  if (i < ids.size()) lp->dirty.insert(lp->dirty.begin(), ids.begin() + static_cast<ptrdiff_t>(i), ids.end());
  // Keep the capacity: the next turn reuses it instead of allocating.
  ids.clear();
  if (lp->dirty.empty()) lp->dirty.swap(ids);
}

void sg_loop_flush(loop* lp) {
  sg_loop_unstage(lp);
  flush_dirty(lp);
}

static void on_idle(uv_idle_t* h);

// Flush what JS queued, deliver what flushing produced (drain, shutdown, errors), and repeat a bounded number of
// times for writes made in response. Whatever is left continues in the next loop iteration, and the idle handle
// makes sure that iteration does not block in poll first (a writer woken by 'drain' would otherwise stall until
// some unrelated event).
void sg_loop_unstage(loop* lp) {
  int32_t* h = lp->stage_rec;
  if (h == nullptr || h[0] == 0) return;
  uint32_t n = static_cast<uint32_t>(h[0]);
  if (n > lp->stage_cap) n = lp->stage_cap;
  for (uint32_t i = 0; i < n; i++) {
    const int32_t* r = h + SG_STAGE_HDR + SG_STAGE_INTS * i;
    uint32_t off = static_cast<uint32_t>(r[1]), len = static_cast<uint32_t>(r[2]);
    socket* s = sg_loop_find(lp, static_cast<uint32_t>(r[0]));
    if (!s || off > lp->stage_len || len > lp->stage_len - off) continue;
    uint64_t& staged = s->ctr[SG_CTR_STAGED];
    staged = staged >= len ? staged - len : 0;
    struct iovec v = {lp->stage + off, len};
    // A socket that failed meanwhile drops them: its error is (or will be) reported on its own.
    sg_write(s, &v, nullptr, 1);
  }
  h[0] = 0;
  h[1] = 0;
}

// The settle passes; whether work is left for the next turn.
static inline bool settle_passes(loop* lp) {
  for (int i = 0; i < kSettlePasses; i++) {
    sg_loop_unstage(lp);
    flush_dirty(lp);
    if (lp->rec_n == 0) break;
    sg_loop_dispatch(lp);
  }
  return !lp->dirty.empty() || lp->rec_n > 0 || (lp->stage_rec && lp->stage_rec[0] > 0);
}

static void settle(loop* lp) {
  bool left = settle_passes(lp);
  if (lp->closing) return;
  if (left) uv_idle_start(&lp->idle, on_idle);
  else uv_idle_stop(&lp->idle);
}

// Thread backend: a leftover continues in a later turn through setImmediate, so I/O is not starved.
static void settle_thread(loop* lp) {
  bool left = settle_passes(lp);
  if (lp->closing || !left || lp->settle_scheduled) return;
  napi_env env = lp->env;
  napi_value fn, recv, later;
  if (napi_get_reference_value(env, lp->schedule_ref, &fn) != napi_ok || !fn) return;
  lp->settle_scheduled = true;
  napi_get_undefined(env, &recv);
  napi_get_boolean(env, true, &later);
  napi_call_function(env, recv, fn, 1, &later, nullptr);
}

// Drains the ready set in bounded rounds, dispatching and settling after each batch.
template <void (*Settle)(loop*)>
static inline void drain_set(loop* lp) {
  poll_event evs[kWaitBatch];
  int extra = 0;
  for (int round = 0; round < kMaxRounds; round++) {
    int n = sg_poll_wait(lp->pfd, evs, kWaitBatch);
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      if (lp->rec_n + SG_REC_MARGIN > SG_REC_CAP || lp->slab_len - lp->slab_used < kSlabMargin) sg_loop_dispatch(lp);
      uint32_t id = static_cast<uint32_t>(evs[i].token);
      uint32_t gen = static_cast<uint32_t>(evs[i].token >> 32);
      socket* s = sg_loop_find(lp, id);
      // A socket closed by JS earlier in this batch is gone; a reused id carries a new generation.
      if (!s || s->gen != gen) continue;
      sg_on_event(s, evs[i].flags);
    }
    sg_loop_dispatch(lp);
    Settle(lp);
    // Reads the slab cut short: poll the set again now (level-triggered, they are still ready) rather than go
    // back through the whole libuv loop for them.
    bool more = lp->read_more && extra++ < kMoreReads;
    lp->read_more = false;
    if (n < kWaitBatch && !more) break;
  }
  Settle(lp);
}

static void on_poll(uv_poll_t* h, int status, int events) {
  loop* lp = from_handle(reinterpret_cast<uv_handle_t*>(h));
  if (lp->closing) return;
  drain_set<settle>(lp);
}

void sg_loop_poll(loop* lp) {
  if (lp->closing) return;
  bool was = lp->settling;
  lp->settling = true;
  drain_set<settle_thread>(lp);
  lp->settling = was;
}

int sg_loop_settle(loop* lp) {
  if (lp->closing) return 0;
  // Called from inside a dispatch (a nested task queue): the outer settle runs next anyway; try again later.
  if (lp->settling || lp->in_dispatch) return 1;
  lp->settle_scheduled = false;
  lp->settling = true;
  bool left = settle_passes(lp);
  lp->settling = false;
  if (left && !lp->closing) lp->settle_scheduled = true;
  return left ? 1 : 0;
}

static void on_direct(uv_poll_t* h, int status, int events) {
  direct_watch* dw = static_cast<direct_watch*>(h->data);
  loop* lp = dw->lp;
  if (lp->closing) return;
  uint32_t f = 0;
  if (status < 0) f |= SG_ERR | SG_IN;
  if (events & UV_READABLE) f |= SG_IN;
  if (events & UV_WRITABLE) f |= SG_OUT;
  if (events & UV_DISCONNECT) f |= SG_HUP | SG_IN;
  if (lp->rec_n + SG_REC_MARGIN > SG_REC_CAP || lp->slab_len - lp->slab_used < kSlabMargin) sg_loop_dispatch(lp);
  // The socket may have been closed (and the watch demoted) by JS during that dispatch.
  if (lp->dw == dw) sg_on_event(dw->s, f);
  sg_loop_dispatch(lp);
  // A read the slab cut short goes on now that the dispatch emptied the slab: what the kernel already holds (the
  // rest of a large reply) arrives in this wake-up instead of costing another trip through poll.
  for (int i = 0; i < kMoreReads && lp->read_more && lp->dw == dw && !lp->closing; i++) {
    lp->read_more = false;
    sg_on_event(dw->s, SG_IN);
    sg_loop_dispatch(lp);
  }
  lp->read_more = false;
  settle(lp);
}

static void on_turn(uv_handle_t* h) {
  loop* lp = from_handle(h);
  if (!lp->closing) settle(lp);
}

static void on_prepare(uv_prepare_t* h) { on_turn(reinterpret_cast<uv_handle_t*>(h)); }
static void on_idle(uv_idle_t* h) {
  loop* lp = from_handle(reinterpret_cast<uv_handle_t*>(h));
  if (lp->closing) return;
  sg_loop_dispatch(lp);
  settle(lp);
}
static void on_check(uv_check_t* h) { on_turn(reinterpret_cast<uv_handle_t*>(h)); }

// Releases everything a loop holds besides its uv handles: references, the async context, the poll descriptor
// and memory. Safe on a partly created loop (unset members are null / -1).
void sg_loop_release(loop* lp) {
  napi_env env = lp->env;
  if (lp->pfd >= 0) sys_close(lp->pfd);
  lp->pfd = -1;
  if (lp->async_ctx) napi_async_destroy(env, lp->async_ctx);
  napi_ref refs[] = {lp->fn_ref,       lp->slab_ref,  lp->stage_ref,   lp->stage_rec_ref,
                     lp->rec_ref,      lp->resource_ref, lp->owner_ref, lp->schedule_ref};
  for (napi_ref r : refs) {
    if (r) napi_delete_reference(env, r);
  }
  for (uint32_t i = 0; i < lp->nchunks; i++) napi_delete_reference(env, lp->chunk_refs[i]);
  free(lp->chunk_refs);
  free(lp->chunks);
  free(lp->socks);
  for (char* b : lp->spare_bufs) free(b);
  for (wseg* g : lp->spare_segs) free(g);
  delete lp;
}

static void on_handle_closed(uv_handle_t* h) {
  loop* lp = from_handle(h);
  if (--lp->open_handles > 0) return;
  napi_async_cleanup_hook_handle hook = lp->cleanup;
  sg_loop_release(lp);
  if (hook) napi_remove_async_cleanup_hook(hook);
}

// Environment teardown (process exit, or a worker thread ending): every socket is closed so no descriptor
// outlives its thread.
static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void* arg) {
  loop* lp = static_cast<loop*>(arg);
  lp->closing = true;
  // Nothing may reach the loop through the environment from here on (it is freed once its handles close).
  napi_set_instance_data(lp->env, nullptr, nullptr, nullptr);
  for (uint32_t i = 0; i < lp->nsocks; i++) {
    if (lp->socks[i]) sg_close(lp->socks[i]);
  }
  uv_poll_stop(&lp->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&lp->poll), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&lp->prepare), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&lp->check), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&lp->idle), on_handle_closed);
}

loop* sg_loop_get(napi_env env) {
  void* data = nullptr;
  if (napi_get_instance_data(env, &data) != napi_ok) return nullptr;
  return static_cast<loop*>(data);
}

napi_value sg_loop_owner(napi_env env, loop* lp) {
  napi_value v = nullptr;
  if (!lp->owner_ref || napi_get_reference_value(env, lp->owner_ref, &v) != napi_ok) return nullptr;
  return v;
}

void sg_loop_set_ref(loop* lp, bool ref) {
  if (lp->ref == ref) return;
  lp->ref = ref;
  if (lp->backend == SG_BACKEND_THREAD) {
    sg_thread_set_ref(lp, ref);
    return;
  }
  if (ref) uv_ref(reinterpret_cast<uv_handle_t*>(&lp->poll));
  else uv_unref(reinterpret_cast<uv_handle_t*>(&lp->poll));
  if (lp->dw) {
    if (ref) uv_ref(reinterpret_cast<uv_handle_t*>(&lp->dw->h));
    else uv_unref(reinterpret_cast<uv_handle_t*>(&lp->dw->h));
  }
}

}  // namespace sg

namespace sg {

// An Int32Array's data and element count; false for anything else.
static bool int32_view(napi_env env, napi_value v, int32_t** data, size_t* count) {
  napi_typedarray_type t;
  size_t off = 0;
  void* p = nullptr;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &t, count, &p, &ab, &off) != napi_ok || t != napi_int32_array) return false;
  *data = static_cast<int32_t*>(p);
  return true;
}

static int ref_of(napi_env env, napi_value v, napi_ref* out) {
  return napi_create_reference(env, v, 1, out) == napi_ok ? 0 : -ENOMEM;
}

int sg_loop_create(napi_env env, const loop_init_args* a, loop** out) {
  void* slab = nullptr;
  size_t slab_len = 0;
  if (napi_get_arraybuffer_info(env, a->slab_ab, &slab, &slab_len) != napi_ok || slab_len < SG_SLAB_MIN) return -EINVAL;
  int32_t* rec = nullptr;
  size_t rec_len = 0;
  if (!int32_view(env, a->rec_ta, &rec, &rec_len) || rec_len < SG_REC_CAP * SG_REC_INTS) return -EINVAL;
  void* stage = nullptr;
  size_t stage_len = 0;
  if (napi_get_arraybuffer_info(env, a->stage_ab, &stage, &stage_len) != napi_ok) return -EINVAL;
  int32_t* stage_rec = nullptr;
  size_t stage_n = 0;
  if (!int32_view(env, a->stage_rec_ta, &stage_rec, &stage_n) || stage_n < SG_STAGE_HDR + SG_STAGE_INTS) return -EINVAL;

  bool threaded = a->backend == SG_BACKEND_THREAD;
  uv_loop_t* uv = nullptr;
  // Only the uv backend asks for the uv loop: Bun answers with something that is not one.
  if (!threaded && (napi_get_uv_event_loop(env, &uv) != napi_ok || !uv)) return -ENOTSUP;

  auto* lp = new (std::nothrow) loop();
  if (!lp) return -ENOMEM;
  lp->env = env;
  lp->backend = threaded ? SG_BACKEND_THREAD : SG_BACKEND_UV;
  lp->uv = uv;
  lp->pfd = sg_poll_create();
  if (lp->pfd < 0) {
    int r = lp->pfd;
    lp->pfd = -1;
    sg_loop_release(lp);
    return r;
  }
  lp->slab = static_cast<uint8_t*>(slab);
  lp->slab_len = static_cast<uint32_t>(slab_len > UINT32_MAX ? UINT32_MAX : slab_len);
  lp->rec = rec;
  lp->stage = static_cast<uint8_t*>(stage);
  lp->stage_len = static_cast<uint32_t>(stage_len > UINT32_MAX ? UINT32_MAX : stage_len);
  lp->stage_rec = stage_rec;
  size_t cap = (stage_n - SG_STAGE_HDR) / SG_STAGE_INTS;
  lp->stage_cap = static_cast<uint32_t>(cap > UINT32_MAX ? UINT32_MAX : cap);

  napi_value resource = nullptr, name = nullptr;
  int r = 0;
  if (r == 0) r = ref_of(env, a->slab_ab, &lp->slab_ref);
  if (r == 0) r = ref_of(env, a->rec_ta, &lp->rec_ref);
  if (r == 0) r = ref_of(env, a->fn, &lp->fn_ref);
  if (r == 0) r = ref_of(env, a->stage_ab, &lp->stage_ref);
  if (r == 0) r = ref_of(env, a->stage_rec_ta, &lp->stage_rec_ref);
  if (r == 0) r = ref_of(env, a->owner, &lp->owner_ref);
  if (r == 0 && threaded) r = ref_of(env, a->schedule, &lp->schedule_ref);
  if (r == 0 && threaded) {
    // No async context: records reach JS from a threadsafe-function call or a JS task (see sg_loop_dispatch).
    if (napi_create_object(env, &resource) != napi_ok) r = -ENOMEM;
    if (r == 0) r = ref_of(env, resource, &lp->resource_ref);
    if (r == 0 && napi_set_instance_data(env, lp, nullptr, nullptr) != napi_ok) r = -ENOMEM;
    // Once started, the helper thread's teardown owns the loop; a failed start leaves nothing running.
    if (r == 0) r = sg_thread_start(lp);
    if (r < 0) {
      napi_set_instance_data(env, nullptr, nullptr, nullptr);
      sg_loop_release(lp);
      return r;
    }
    lp->stage_rec[0] = 0;
    lp->stage_rec[1] = 0;
    *out = lp;
    return 0;
  }
  if (r == 0 && napi_create_object(env, &resource) != napi_ok) r = -ENOMEM;
  if (r == 0) r = ref_of(env, resource, &lp->resource_ref);
  if (r == 0 && napi_create_string_utf8(env, "SOCKGUARD_LOOP", NAPI_AUTO_LENGTH, &name) != napi_ok) r = -ENOMEM;
  if (r == 0 && napi_async_init(env, resource, name, &lp->async_ctx) != napi_ok) {
    lp->async_ctx = nullptr;
    r = -ENOMEM;
  }
  if (r < 0) {
    sg_loop_release(lp);
    return r;
  }

  // The handles: once one is initialised it can only be freed through uv_close, so a failure from here on
  // closes the ones that exist and lets on_handle_closed release the rest.
  uv_handle_t* handles[] = {reinterpret_cast<uv_handle_t*>(&lp->poll), reinterpret_cast<uv_handle_t*>(&lp->prepare),
                            reinterpret_cast<uv_handle_t*>(&lp->check), reinterpret_cast<uv_handle_t*>(&lp->idle)};
  int inited = 0;
  r = uv_poll_init(uv, &lp->poll, lp->pfd);
  if (r == 0) {
    inited++;
    r = uv_prepare_init(uv, &lp->prepare);
  }
  if (r == 0) {
    inited++;
    r = uv_check_init(uv, &lp->check);
  }
  if (r == 0) {
    inited++;
    r = uv_idle_init(uv, &lp->idle);
  }
  if (r == 0) inited++;
  for (uv_handle_t* h : handles) h->data = lp;
  if (r == 0) r = uv_poll_start(&lp->poll, UV_READABLE, on_poll);
  if (r == 0) r = uv_prepare_start(&lp->prepare, on_prepare);
  if (r == 0) r = uv_check_start(&lp->check, on_check);
  if (r == 0 && napi_add_async_cleanup_hook(env, on_env_cleanup, lp, &lp->cleanup) != napi_ok) {
    lp->cleanup = nullptr;
    r = -ENOMEM;
  }
  if (r == 0 && napi_set_instance_data(env, lp, nullptr, nullptr) != napi_ok) r = -ENOMEM;
  if (r < 0) {
    lp->closing = true;
    if (lp->cleanup) {
      napi_remove_async_cleanup_hook(lp->cleanup);
      lp->cleanup = nullptr;
    }
    if (inited == 0) {
      sg_loop_release(lp);
      return r;
    }
    // Handles close asynchronously; the loop is freed with the last one.
    lp->open_handles = inited;
    for (int i = 0; i < inited; i++) uv_close(handles[i], on_handle_closed);
    return r;
  }
  lp->open_handles = 4;
  // Only a ref'd socket keeps the process alive, exactly as with net: these handles never do on their own.
  for (uv_handle_t* h : handles) uv_unref(h);
  lp->stage_rec[0] = 0;
  lp->stage_rec[1] = 0;
  *out = lp;
  return 0;
}

int sg_loop_add_chunk(napi_env env, loop* lp, napi_value ab) {
  void* data = nullptr;
  size_t len = 0;
  if (napi_get_arraybuffer_info(env, ab, &data, &len) != napi_ok) return -EINVAL;
  if (len < SG_CHUNK * SG_CTR_SLOTS * sizeof(uint64_t) || (reinterpret_cast<uintptr_t>(data) & 7)) return -EINVAL;
  if (lp->nsocks > UINT32_MAX - SG_CHUNK) return -ERANGE;
  uint32_t n = lp->nchunks + 1;
  // Each array is replaced only once every allocation has succeeded, so a failure leaves the loop as it was.
  auto* chunks = static_cast<uint64_t**>(malloc(n * sizeof(uint64_t*)));
  auto* refs = static_cast<napi_ref*>(malloc(n * sizeof(napi_ref)));
  auto* socks = static_cast<socket**>(calloc(static_cast<size_t>(n) * SG_CHUNK, sizeof(socket*)));
  napi_ref ref = nullptr;
  if (!chunks || !refs || !socks || napi_create_reference(env, ab, 1, &ref) != napi_ok) {
    free(chunks);
    free(refs);
    free(socks);
    return -ENOMEM;
  }
  if (lp->nchunks) {
    memcpy(chunks, lp->chunks, lp->nchunks * sizeof(uint64_t*));
    memcpy(refs, lp->chunk_refs, lp->nchunks * sizeof(napi_ref));
    memcpy(socks, lp->socks, lp->nsocks * sizeof(socket*));
  }
  chunks[lp->nchunks] = static_cast<uint64_t*>(data);
  refs[lp->nchunks] = ref;
  free(lp->chunks);
  free(lp->chunk_refs);
  free(lp->socks);
  lp->chunks = chunks;
  lp->chunk_refs = refs;
  lp->socks = socks;
  lp->nchunks = n;
  lp->nsocks = n * SG_CHUNK;
  return static_cast<int>(n);
}

}  // namespace sg
