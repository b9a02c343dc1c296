// N-API glue: converts arguments and results, nothing else (src/core/native.ts describes every export).
//
// Every argument of every export is checked before anything happens: a value of the wrong type throws a
// TypeError with code ERR_INVALID_ARG_TYPE, a number out of its range (or not an integer) a RangeError with
// code ERR_OUT_OF_RANGE, and the function returns at once with the exception pending. Only JS input that is
// well formed reaches the core; what the core answers comes back as a number: >= 0 on success, a negative
// errno on failure. Nothing here allocates in a way that can throw or abort.
#include <errno.h>
#include <napi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <new>

#include "sg.h"

namespace {

using sg::loop;
using sg::socket;

constexpr const char* kInvalidArgType = "ERR_INVALID_ARG_TYPE";
constexpr const char* kOutOfRange = "ERR_OUT_OF_RANGE";
// Largest integer a double holds exactly: ranges above it cannot be checked, and none is needed.
constexpr double kMaxUint32 = 4294967295.0;
constexpr double kMinInt32 = -2147483648.0;
constexpr double kMaxInt32 = 2147483647.0;
constexpr double kMaxPort = 65535.0;

inline Napi::Value num(Napi::Env env, double v) { return Napi::Number::New(env, v); }

// A returned empty value leaves the pending exception to propagate.
inline Napi::Value thrown() { return Napi::Value(); }

const char* type_name(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  switch (t) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "type boolean";
    case napi_number: return "type number";
    case napi_string: return "type string";
    case napi_symbol: return "type symbol";
    case napi_object: return "an object";
    case napi_function: return "function";
    case napi_external: return "an external";
    case napi_bigint: return "type bigint";
  }
  return "an unknown value";
}

// Messages follow Node's own: `The "id" argument must be of type number. Received type string`. The received
// value is described by its type only, so describing it never runs JS (no toString, no getters).
bool type_error(napi_env env, const char* name, const char* expected, napi_value got) {
  char msg[160];
  snprintf(msg, sizeof(msg), "The \"%s\" argument must be %s. Received %s", name, expected, type_name(env, got));
  napi_throw_type_error(env, kInvalidArgType, msg);
  return false;
}

bool range_error(napi_env env, const char* name, const char* expected, double got) {
  char msg[200];
  snprintf(msg, sizeof(msg), "The value of \"%s\" is out of range. It must be %s. Received %.17g", name, expected, got);
  napi_throw_range_error(env, kOutOfRange, msg);
  return false;
}

// An integer number in [lo, hi]; `range` describes the range for the message.
bool int_arg(napi_env env, napi_value v, const char* name, double lo, double hi, const char* range, double* out) {
  napi_valuetype t = napi_undefined;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return type_error(env, name, "of type number", v);
  double d = 0;
  napi_get_value_double(env, v, &d);
  // NaN fails both comparisons; infinities fail the range.
  if (!(d >= lo && d <= hi) || static_cast<double>(static_cast<int64_t>(d)) != d) return range_error(env, name, range, d);
  *out = d;
  return true;
}

bool u32_arg(napi_env env, napi_value v, const char* name, uint32_t* out) {
  double d;
  if (!int_arg(env, v, name, 0, kMaxUint32, "an integer >= 0 and <= 4294967295", &d)) return false;
  *out = static_cast<uint32_t>(d);
  return true;
}

bool i32_arg(napi_env env, napi_value v, const char* name, int32_t* out) {
  double d;
  if (!int_arg(env, v, name, kMinInt32, kMaxInt32, "an integer >= -2147483648 and <= 2147483647", &d)) return false;
  *out = static_cast<int32_t>(d);
  return true;
}

bool port_arg(napi_env env, napi_value v, int* out) {
  double d;
  if (!int_arg(env, v, "port", 0, kMaxPort, "an integer >= 0 and <= 65535", &d)) return false;
  *out = static_cast<int>(d);
  return true;
}

bool fd_arg(napi_env env, napi_value v, int* out) {
  double d;
  if (!int_arg(env, v, "fd", 0, kMaxInt32, "an integer >= 0 and <= 2147483647", &d)) return false;
  *out = static_cast<int>(d);
  return true;
}

bool family_arg(napi_env env, napi_value v, int* out) {
  double d;
  if (!int_arg(env, v, "family", 4, 6, "4 or 6", &d)) return false;
  if (d != 4 && d != 6) return range_error(env, "family", "4 or 6", d);
  *out = static_cast<int>(d);
  return true;
}

bool bool_arg(napi_env env, napi_value v, const char* name, bool* out) {
  napi_valuetype t = napi_undefined;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) return type_error(env, name, "of type boolean", v);
  napi_get_value_bool(env, v, out);
  return true;
}

bool is_type(napi_env env, napi_value v, napi_valuetype want) {
  napi_valuetype t = napi_undefined;
  return napi_typeof(env, v, &t) == napi_ok && t == want;
}

// An optional trailing boolean (absent: false).
bool opt_bool_arg(napi_env env, napi_value v, const char* name, bool* out) {
  *out = false;
  return is_type(env, v, napi_undefined) || bool_arg(env, v, name, out);
}

// Address text: a string, copied into `buf` (SG_IP_MAX + 1 bytes). A longer string is no address of any family;
// *fits says so and the caller answers -EINVAL, as the core does for any other text that is not a literal.
bool ip_arg(napi_env env, napi_value v, char* buf, bool* fits) {
  if (!is_type(env, v, napi_string)) return type_error(env, "ip", "of type string", v);
  size_t len = 0;
  napi_get_value_string_utf8(env, v, nullptr, 0, &len);
  *fits = len <= sg::SG_IP_MAX;
  buf[0] = 0;
  if (*fits) napi_get_value_string_utf8(env, v, buf, sg::SG_IP_MAX + 1, &len);
  // Text with an embedded NUL would be read shorter than it is.
  if (*fits && strlen(buf) != len) *fits = false;
  return true;
}

// Bytes of a Buffer / any TypedArray / DataView. A detached buffer answers no bytes.
bool view_arg(napi_env env, napi_value v, const char* name, void** data, size_t* len) {
  bool is = false;
  napi_value ab;
  size_t off = 0;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type t;
    size_t n = 0;
    napi_get_typedarray_info(env, v, &t, &n, data, &ab, &off);
    static const size_t widths[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};
    *len = n * (static_cast<size_t>(t) < sizeof(widths) / sizeof(widths[0]) ? widths[t] : 1);
    if (*len == 0) *data = nullptr;
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    napi_get_dataview_info(env, v, len, data, &ab, &off);
    if (*len == 0) *data = nullptr;
    return true;
  }
  return type_error(env, name, "an instance of Buffer, TypedArray, or DataView", v);
}

bool arraybuffer_arg(napi_env env, napi_value v, const char* name) {
  bool is = false;
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) return true;
  return type_error(env, name, "an instance of ArrayBuffer", v);
}

// An Int32Array of at least `min` elements.
bool int32array_arg(napi_env env, napi_value v, const char* name, size_t min) {
  bool is = false;
  napi_typedarray_type t = napi_int8_array;
  size_t n = 0;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &t, &n, nullptr, nullptr, nullptr) != napi_ok || t != napi_int32_array)
    return type_error(env, name, "an instance of Int32Array", v);
  if (n < min) {
    char want[64];
    snprintf(want, sizeof(want), "a length >= %zu", min);
    return range_error(env, name, want, static_cast<double>(n));
  }
  return true;
}

size_t arraybuffer_len(napi_env env, napi_value v) {
  void* data = nullptr;
  size_t len = 0;
  napi_get_arraybuffer_info(env, v, &data, &len);
  return len;
}

inline loop* get_loop(napi_env env) { return sg::sg_loop_get(env); }

inline socket* find(napi_env env, uint32_t id) {
  loop* lp = get_loop(env);
  return lp ? sg::sg_loop_find(lp, id) : nullptr;
}

// For operations whose effect depends on what is already queued (writes, shutdown, close, detach): staged
// writes are older, so they enter the queues first.
inline socket* find_in_order(napi_env env, uint32_t id) {
  loop* lp = get_loop(env);
  if (!lp) return nullptr;
  sg::sg_loop_unstage(lp);
  return sg::sg_loop_find(lp, id);
}

// The loop for an operation that creates socket `id`: 0, -EBADF (no loop) or -EEXIST (id taken); throws
// (returns false) when no counter chunk covers the id yet.
bool new_slot(napi_env env, uint32_t id, loop** lp, int* status) {
  *lp = get_loop(env);
  *status = 0;
  if (!*lp) *status = -EBADF;
  else if (!sg::sg_loop_id_ok(*lp, id)) return range_error(env, "id", "covered by a counter chunk (loop_add_chunk)", id);
  else if (sg::sg_loop_find(*lp, id)) *status = -EEXIST;
  return true;
}

#define SG_ARGS(n)                 \
  napi_env env = info.Env();       \
  napi_value argv[n];              \
  for (size_t i = 0; i < (n); i++) argv[i] = info[i];

// loop_init(slab: ArrayBuffer, records: Int32Array, dispatch: (count) => void, stage: ArrayBuffer,
//           stageRecords: Int32Array, owner: object, backend: 0 | 1, schedule?: (later: boolean) => void):
//           0 | -errno (-EEXIST: this thread has a loop). `schedule` is required by the thread backend.
Napi::Value loop_init(const Napi::CallbackInfo& info) {
  SG_ARGS(8);
  if (!arraybuffer_arg(env, argv[0], "slab")) return thrown();
  if (arraybuffer_len(env, argv[0]) < sg::SG_SLAB_MIN) {
    range_error(env, "slab.byteLength", ">= layout().slabMin", static_cast<double>(arraybuffer_len(env, argv[0])));
    return thrown();
  }
  if (!int32array_arg(env, argv[1], "records", sg::SG_REC_CAP * sg::SG_REC_INTS)) return thrown();
  if (!is_type(env, argv[2], napi_function)) return type_error(env, "dispatch", "of type function", argv[2]), thrown();
  if (!arraybuffer_arg(env, argv[3], "stage")) return thrown();
  if (!int32array_arg(env, argv[4], "stageRecords", sg::SG_STAGE_HDR + sg::SG_STAGE_INTS)) return thrown();
  if (!is_type(env, argv[5], napi_object)) return type_error(env, "owner", "of type object", argv[5]), thrown();
  uint32_t backend;
  if (!u32_arg(env, argv[6], "backend", &backend)) return thrown();
  if (backend != sg::SG_BACKEND_UV && backend != sg::SG_BACKEND_THREAD) {
    range_error(env, "backend", "layout().backends.uv or layout().backends.thread", backend);
    return thrown();
  }
  if (backend == sg::SG_BACKEND_THREAD && !is_type(env, argv[7], napi_function))
    return type_error(env, "schedule", "of type function", argv[7]), thrown();
  if (get_loop(env)) return num(env, -EEXIST);
  sg::loop_init_args a{argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], static_cast<int32_t>(backend), argv[7]};
  loop* lp = nullptr;
  return num(env, sg::sg_loop_create(env, &a, &lp));
}

// loop_owner(): the owner given to loop_init, or undefined before it (or after the loop's teardown)
Napi::Value loop_owner(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  loop* lp = get_loop(env);
  napi_value v = lp ? sg::sg_loop_owner(env, lp) : nullptr;
  return v ? Napi::Value(env, v) : info.Env().Undefined();
}

// loop_add_chunk(counters: ArrayBuffer): number of chunks | -errno
Napi::Value loop_add_chunk(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  if (!arraybuffer_arg(env, argv[0], "counters")) return thrown();
  size_t len = arraybuffer_len(env, argv[0]);
  if (len != static_cast<size_t>(sg::SG_CHUNK) * sg::SG_CTR_SLOTS * sizeof(uint64_t)) {
    range_error(env, "counters.byteLength", "layout().chunk * layout().ctr.slots * 8", static_cast<double>(len));
    return thrown();
  }
  loop* lp = get_loop(env);
  if (!lp) return num(env, -EBADF);
  return num(env, sg::sg_loop_add_chunk(env, lp, argv[0]));
}

// loop_settle(): 1 when work is left for another turn, 0, or -EBADF (no loop; the uv backend settles itself)
Napi::Value loop_settle(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  loop* lp = get_loop(env);
  if (!lp || lp->backend != sg::SG_BACKEND_THREAD) return num(env, -EBADF);
  return num(env, sg::sg_loop_settle(lp));
}

// loop_ref(on: boolean): 0 | -EBADF
Napi::Value loop_ref(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  bool on;
  if (!bool_arg(env, argv[0], "on", &on)) return thrown();
  loop* lp = get_loop(env);
  if (!lp) return num(env, -EBADF);
  sg::sg_loop_set_ref(lp, on);
  return num(env, 0);
}

// tcp_connect(id, family, ip, port, highWaterMark): 0 | -errno
Napi::Value tcp_connect(const Napi::CallbackInfo& info) {
  SG_ARGS(5);
  uint32_t id, hwm;
  int family, port;
  char ip[sg::SG_IP_MAX + 1];
  bool fits;
  if (!u32_arg(env, argv[0], "id", &id) || !family_arg(env, argv[1], &family) || !ip_arg(env, argv[2], ip, &fits) ||
      !port_arg(env, argv[3], &port) || !u32_arg(env, argv[4], "highWaterMark", &hwm))
    return thrown();
  loop* lp;
  int r;
  if (!new_slot(env, id, &lp, &r)) return thrown();
  if (r < 0) return num(env, r);
  if (!fits) return num(env, -EINVAL);
  int err = 0;
  socket* s = sg::sg_tcp_connect(lp, id, family, ip, port, hwm, &err);
  return num(env, s ? 0 : err);
}

// udp_open(id, family): 0 | -errno
Napi::Value udp_open(const Napi::CallbackInfo& info) {
  SG_ARGS(2);
  uint32_t id;
  int family;
  if (!u32_arg(env, argv[0], "id", &id) || !family_arg(env, argv[1], &family)) return thrown();
  loop* lp;
  int r;
  if (!new_slot(env, id, &lp, &r)) return thrown();
  if (r < 0) return num(env, r);
  int err = 0;
  socket* s = sg::sg_udp_open(lp, id, family, &err);
  return num(env, s ? 0 : err);
}

// udp_bind(id, family, ip, port) / udp_connect(id, family, ip, port): 0 | -errno
Napi::Value udp_addr_op(const Napi::CallbackInfo& info, bool connect) {
  SG_ARGS(4);
  uint32_t id;
  int family, port;
  char ip[sg::SG_IP_MAX + 1];
  bool fits;
  if (!u32_arg(env, argv[0], "id", &id) || !family_arg(env, argv[1], &family) || !ip_arg(env, argv[2], ip, &fits) ||
      !port_arg(env, argv[3], &port))
    return thrown();
  socket* s = find(env, id);
  if (!s) return num(env, -EBADF);
  if (!fits) return num(env, -EINVAL);
  struct sockaddr_storage ss;
  socklen_t len;
  int r = sg::sys_make_addr(family, ip, port, &ss, &len);
  if (r < 0) return num(env, r);
  r = connect ? sg::sys_connect(s->fd, reinterpret_cast<struct sockaddr*>(&ss), len)
              : sg::sys_bind(s->fd, reinterpret_cast<struct sockaddr*>(&ss), len);
  return num(env, r);
}
Napi::Value udp_bind(const Napi::CallbackInfo& info) { return udp_addr_op(info, false); }
Napi::Value udp_connect(const Napi::CallbackInfo& info) { return udp_addr_op(info, true); }

// udp_disconnect(id): 0 | -errno
Napi::Value udp_disconnect(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  socket* s = find(env, id);
  return num(env, s ? sg::sys_disconnect(s->fd) : -EBADF);
}

// udp_send(id, data, ip | null, port, family): bytes sent | -errno. With ip null (a connected socket) port and
// family are unused: they must still be integers, port in 0..65535 and family 0, 4 or 6.
Napi::Value udp_send(const Napi::CallbackInfo& info) {
  SG_ARGS(5);
  uint32_t id;
  void* data;
  size_t len;
  if (!u32_arg(env, argv[0], "id", &id) || !view_arg(env, argv[1], "data", &data, &len)) return thrown();
  bool to = !is_type(env, argv[2], napi_null);
  char ip[sg::SG_IP_MAX + 1];
  bool fits = true;
  int port, family = 0;
  if (to && !ip_arg(env, argv[2], ip, &fits)) return thrown();
  if (!port_arg(env, argv[3], &port)) return thrown();
  if (to) {
    if (!family_arg(env, argv[4], &family)) return thrown();
  } else {
    double d;
    if (!int_arg(env, argv[4], "family", 0, 6, "0, 4 or 6", &d)) return thrown();
    if (d != 0 && d != 4 && d != 6) return range_error(env, "family", "0, 4 or 6", d), thrown();
  }
  socket* s = find(env, id);
  if (!s) return num(env, -EBADF);
  if (!fits) return num(env, -EINVAL);
  return num(env, static_cast<double>(sg::sg_udp_send(s, data, len, to ? ip : nullptr, port, family)));
}

// socket_write(id, data, now?): bytes pending | -errno. With now, the bytes leave at once unless the socket is
// already in the turn's flush list (sg_write_now).
Napi::Value socket_write(const Napi::CallbackInfo& info) {
  SG_ARGS(3);
  uint32_t id;
  struct iovec v;
  size_t len;
  bool now;
  if (!u32_arg(env, argv[0], "id", &id) || !view_arg(env, argv[1], "data", &v.iov_base, &len) ||
      !opt_bool_arg(env, argv[2], "now", &now)) {
    return thrown();
  }
  v.iov_len = len;
  socket* s = find_in_order(env, id);
  if (!s) return num(env, -EBADF);
  return num(env, static_cast<double>(now ? sg::sg_write_now(s, &v, &argv[1], 1) : sg::sg_write(s, &v, &argv[1], 1)));
}

// socket_writev(id, chunks: ArrayBufferView[] (at most layout().writevMax), now?): bytes pending | -errno
Napi::Value socket_writev(const Napi::CallbackInfo& info) {
  SG_ARGS(3);
  uint32_t id;
  bool now;
  if (!u32_arg(env, argv[0], "id", &id) || !opt_bool_arg(env, argv[2], "now", &now)) return thrown();
  bool is = false;
  if (napi_is_array(env, argv[1], &is) != napi_ok || !is) return type_error(env, "chunks", "an instance of Array", argv[1]), thrown();
  uint32_t n = 0;
  napi_get_array_length(env, argv[1], &n);
  if (n > sg::SG_WRITEV_MAX) {
    char want[48];
    snprintf(want, sizeof(want), "<= %u (layout().writevMax)", sg::SG_WRITEV_MAX);
    return range_error(env, "chunks.length", want, n), thrown();
  }
  std::unique_ptr<napi_value[]> holders(new (std::nothrow) napi_value[n ? n : 1]);
  std::unique_ptr<struct iovec[]> v(new (std::nothrow) struct iovec[n ? n : 1]);
  if (!holders || !v) return num(env, -ENOMEM);
  // Reading an element can run JS (a getter, a hole looked up on the prototype), which could close the socket or
  // detach a buffer read earlier. So: all elements first, then their bytes (no JS runs from here on), then the
  // socket.
  for (uint32_t i = 0; i < n; i++) {
    if (napi_get_element(env, argv[1], i, &holders[i]) != napi_ok) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (!pending) napi_throw_type_error(env, kInvalidArgType, "The \"chunks\" argument could not be read");
      return thrown();
    }
  }
  for (uint32_t i = 0; i < n; i++) {
    size_t len;
    if (!view_arg(env, holders[i], "chunks[i]", &v[i].iov_base, &len)) return thrown();
    v[i].iov_len = len;
  }
  socket* s = find_in_order(env, id);
  if (!s) return num(env, -EBADF);
  int cnt = static_cast<int>(n);
  return num(env, static_cast<double>(now ? sg::sg_write_now(s, v.get(), holders.get(), cnt)
                                          : sg::sg_write(s, v.get(), holders.get(), cnt)));
}

// socket_flush(id): sends what the socket has queued now rather than at the end of the turn (once per turn). 0 | -EBADF
Napi::Value socket_flush(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  // Not find_in_order: the core decides before it unstages.
  socket* s = find(env, id);
  if (!s) return num(env, -EBADF);
  sg::sg_send_now(s);
  return num(env, 0);
}

// loop_flush(): flushes every socket written since the last flush, without dispatching. 0 | -EBADF (no loop)
Napi::Value loop_flush(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  loop* lp = get_loop(env);
  if (!lp) return num(env, -EBADF);
  sg::sg_loop_flush(lp);
  return num(env, 0);
}

// socket_shutdown(id): 1 done now | 0 after the queue drains (SHUTDOWN record) | -errno
Napi::Value socket_shutdown(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  socket* s = find_in_order(env, id);
  return num(env, s ? sg::sg_shutdown(s) : -EBADF);
}

// socket_read(id, on): pause / resume reading. 0 | -EBADF
Napi::Value socket_read(const Napi::CallbackInfo& info) {
  SG_ARGS(2);
  uint32_t id;
  bool on;
  if (!u32_arg(env, argv[0], "id", &id) || !bool_arg(env, argv[1], "on", &on)) return thrown();
  socket* s = find(env, id);
  if (!s) return num(env, -EBADF);
  sg::sg_set_reading(s, on);
  return num(env, 0);
}

// socket_close(id): 0 | -EBADF
Napi::Value socket_close(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  socket* s = find_in_order(env, id);
  if (!s) return num(env, -EBADF);
  sg::sg_close(s);
  return num(env, 0);
}

// socket_detach(id): fd | -errno (-EBUSY: bytes still queued). The socket leaves the loop; its descriptor stays
// open for the new owner.
Napi::Value socket_detach(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  socket* s = find_in_order(env, id);
  return num(env, s ? sg::sg_detach(s) : -EBADF);
}

// socket_adopt(id, fd, highWaterMark): 0 | -errno
Napi::Value socket_adopt(const Napi::CallbackInfo& info) {
  SG_ARGS(3);
  uint32_t id, hwm;
  int fd;
  if (!u32_arg(env, argv[0], "id", &id) || !fd_arg(env, argv[1], &fd) || !u32_arg(env, argv[2], "highWaterMark", &hwm))
    return thrown();
  loop* lp;
  int r;
  if (!new_slot(env, id, &lp, &r)) return thrown();
  if (r < 0) return num(env, r);
  int err = 0;
  socket* s = sg::sg_adopt(lp, id, fd, hwm, &err);
  return num(env, s ? 0 : err);
}

// socket_name(id, peer): [family, address, port] | -errno
Napi::Value socket_name(const Napi::CallbackInfo& info) {
  SG_ARGS(2);
  uint32_t id;
  bool peer;
  if (!u32_arg(env, argv[0], "id", &id) || !bool_arg(env, argv[1], "peer", &peer)) return thrown();
  socket* s = find(env, id);
  if (!s) return num(env, -EBADF);
  struct sockaddr_storage ss;
  socklen_t len;
  int r = sg::sys_name(s->fd, peer ? 1 : 0, &ss, &len);
  if (r < 0) return num(env, r);
  char ip[64];
  int port = 0;
  int family = sg::sys_addr_text(&ss, ip, sizeof(ip), &port);
  if (family < 0) return num(env, family);
  Napi::Array out = Napi::Array::New(env, 3);
  out.Set(0u, num(env, family));
  out.Set(1u, Napi::String::New(env, ip));
  out.Set(2u, num(env, port));
  return out;
}

// socket_so_error(id): 0 | -errno pending on the socket
Napi::Value socket_so_error(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  socket* s = find(env, id);
  return num(env, s ? sg::sys_so_error(s->fd) : -EBADF);
}

// socket_getsockopt(id, level, name): value | -errno. SO_LINGER answers the seconds when on, else
// layout().lingerOff (-1, which only SO_LINGER answers: it cannot fail with EPERM on a live socket).
Napi::Value socket_getsockopt(const Napi::CallbackInfo& info) {
  SG_ARGS(3);
  uint32_t id;
  int32_t level, name;
  if (!u32_arg(env, argv[0], "id", &id) || !i32_arg(env, argv[1], "level", &level) || !i32_arg(env, argv[2], "name", &name))
    return thrown();
  socket* s = find(env, id);
  if (!s) return num(env, -EBADF);
  int v = 0;
  int r = sg::sg_getsockopt(s, level, name, &v);
  return num(env, r < 0 ? r : v);
}

// socket_setsockopt(id, level, name, value): 0 | -errno. SO_LINGER takes layout().lingerOff or
// 0..layout().lingerMax seconds.
Napi::Value socket_setsockopt(const Napi::CallbackInfo& info) {
  SG_ARGS(4);
  uint32_t id;
  int32_t level, name, value;
  if (!u32_arg(env, argv[0], "id", &id) || !i32_arg(env, argv[1], "level", &level) || !i32_arg(env, argv[2], "name", &name) ||
      !i32_arg(env, argv[3], "value", &value))
    return thrown();
  if (!sg::sg_sockopt_value_ok(level, name, value)) {
    char want[96];
    snprintf(want, sizeof(want), "%d (off) or an integer >= 0 and <= %d for SO_LINGER", sg::SG_LINGER_OFF, sg::SG_LINGER_MAX);
    return range_error(env, "value", want, value), thrown();
  }
  socket* s = find(env, id);
  if (!s) return num(env, -EBADF);
  return num(env, sg::sg_setsockopt(s, level, name, value));
}

// socket_keepalive(id, on, idleSeconds): 0 | -errno. idleSeconds <= 0 keeps the system's idle time.
Napi::Value socket_keepalive(const Napi::CallbackInfo& info) {
  SG_ARGS(3);
  uint32_t id;
  bool on;
  int32_t idle;
  if (!u32_arg(env, argv[0], "id", &id) || !bool_arg(env, argv[1], "on", &on) || !i32_arg(env, argv[2], "idleSeconds", &idle))
    return thrown();
  socket* s = find(env, id);
  if (!s) return num(env, -EBADF);
  return num(env, sg::sys_set_keepalive(s->fd, on ? 1 : 0, idle));
}

// ---- TLS (tls.cc) ----------------------------------------------------------------------------------------

// A string argument, or null/undefined for none, copied into malloc'ed memory (freed by the caller). A wrong type
// throws; text that cannot be used (an embedded NUL, which OpenSSL would read shorter than it is, or no memory
// for the copy) is not an exception but an answer: *status is set to -EINVAL / -ENOMEM for the caller to return.
bool opt_string_arg(napi_env env, napi_value v, const char* name, char** out, size_t* len, int* status) {
  *out = nullptr;
  *len = 0;
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  if (t == napi_null || t == napi_undefined) return true;
  if (t != napi_string) return type_error(env, name, "of type string or null", v);
  size_t n = 0;
  napi_get_value_string_utf8(env, v, nullptr, 0, &n);
  char* p = static_cast<char*>(malloc(n + 1));
  if (!p) {
    if (*status == 0) *status = -ENOMEM;
    return true;
  }
  napi_get_value_string_utf8(env, v, p, n + 1, &n);
  if (strlen(p) != n) {
    free(p);
    if (*status == 0) *status = -EINVAL;
    return true;
  }
  *out = p;
  *len = n;
  return true;
}

// Bytes of a Buffer/TypedArray, or null/undefined for none.
bool opt_view_arg(napi_env env, napi_value v, const char* name, void** data, size_t* len) {
  *data = nullptr;
  *len = 0;
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  if (t == napi_null || t == napi_undefined) return true;
  return view_arg(env, v, name, data, len);
}

Napi::Value str_or_null(napi_env env, const char* p, size_t len = NAPI_AUTO_LENGTH) {
  napi_value v;
  if (!p) napi_get_null(env, &v);
  else napi_create_string_utf8(env, p, len, &v);
  return Napi::Value(env, v);
}

// Copies malloc'ed DER into a new Buffer and frees it; null for none.
Napi::Value der_buffer(napi_env env, unsigned char* der, int len) {
  napi_value v;
  if (len < 0 || !der) {
    free(der);
    napi_get_null(env, &v);
    return Napi::Value(env, v);
  }
  void* out = nullptr;
  if (napi_create_buffer_copy(env, static_cast<size_t>(len), der, &out, &v) != napi_ok) napi_get_null(env, &v);
  free(der);
  return Napi::Value(env, v);
}

// The socket `id` with TLS on it, or null.
socket* find_tls(napi_env env, uint32_t id) {
  socket* s = find(env, id);
  return s && s->tls ? s : nullptr;
}

// tls_available(): whether this runtime gives the core an OpenSSL to use
Napi::Value tls_available(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), sg::sg_tls_available());
}

void free_context(napi_env env, void* data, void* hint) { sg::sg_tls_context_free(data); }

// Marks the externals that hold a TLS context, so an external made by anything else is refused, not used.
constexpr napi_type_tag kContextTag = {0x73676374786c7431ULL, 0x9e3779b97f4a7c15ULL};

bool context_arg(napi_env env, napi_value v, void** ctx) {
  bool tagged = false;
  if (!is_type(env, v, napi_external) || napi_check_object_type_tag(env, v, &kContextTag, &tagged) != napi_ok || !tagged)
    return type_error(env, "context", "a TLS context made by tls_context()", v);
  napi_get_value_external(env, v, ctx);
  return true;
}

// tls_context(ca, cert, key, passphrase, ciphers, suites, minVersion, maxVersion): an external holding the
// context, or a string saying why none could be made
Napi::Value tls_context(const Napi::CallbackInfo& info) {
  SG_ARGS(8);
  const char* names[] = {"ca", "cert", "key", "passphrase", "ciphers", "suites"};
  char* str[6] = {};
  size_t len[6] = {};
  int32_t minv, maxv;
  int status = 0;
  bool ok = true;
  for (int i = 0; i < 6 && ok; i++) ok = opt_string_arg(env, argv[i], names[i], &str[i], &len[i], &status);
  ok = ok && i32_arg(env, argv[6], "minVersion", &minv) && i32_arg(env, argv[7], "maxVersion", &maxv);
  if (ok && status == 0 && !str[0] && !is_type(env, argv[0], napi_string)) ok = type_error(env, "ca", "of type string", argv[0]);
  Napi::Value result;
  if (ok && status != 0) {
    result = str_or_null(env, status == -ENOMEM ? "out of memory" : "text with a NUL character");
  } else if (ok) {
    sg::tls_ctx_args a{str[0], len[0], str[1], len[1], str[2], len[2], str[3], str[4], str[5], minv, maxv};
    char err[256] = "";
    void* ctx = sg::sg_tls_context(&a, err, sizeof(err));
    napi_value v;
    if (ctx && napi_create_external(env, ctx, free_context, nullptr, &v) == napi_ok) {
      napi_type_tag_object(env, v, &kContextTag);
      result = Napi::Value(env, v);
    } else {
      if (ctx) sg::sg_tls_context_free(ctx);
      result = str_or_null(env, err[0] ? err : "cannot create a TLS context");
    }
  }
  for (char* p : str) free(p);
  return ok ? result : thrown();
}

// tls_start(id, context, servername, alpn, session, highWaterMark): 0 | -errno. The socket must be connecting, or
// connected and not ending (then the handshake starts at once). From then on the queue's mark is highWaterMark,
// counted in plaintext bytes not yet encrypted plus records not yet sent.
Napi::Value tls_start(const Napi::CallbackInfo& info) {
  SG_ARGS(6);
  uint32_t id, hwm;
  if (!u32_arg(env, argv[0], "id", &id) || !u32_arg(env, argv[5], "highWaterMark", &hwm)) return thrown();
  void* ctx = nullptr;
  if (!context_arg(env, argv[1], &ctx)) return thrown();
  char* name = nullptr;
  size_t name_len = 0;
  void *alpn = nullptr, *sess = nullptr;
  size_t alpn_len = 0, sess_len = 0;
  int status = 0;
  if (!opt_string_arg(env, argv[2], "servername", &name, &name_len, &status)) return thrown();
  if (!opt_view_arg(env, argv[3], "alpn", &alpn, &alpn_len) || !opt_view_arg(env, argv[4], "session", &sess, &sess_len)) {
    free(name);
    return thrown();
  }
  socket* s = find(env, id);
  int r = status < 0 ? status
          : !s     ? -EBADF
             : sg::sg_tls_start(s, ctx, name, static_cast<const unsigned char*>(alpn), alpn_len,
                                static_cast<const unsigned char*>(sess), sess_len);
  if (r == 0) s->hwm = hwm;
  free(name);
  return num(env, r);
}

// tls_info(id): [verifyCode, verifyText, alpn | false, version, cipherName, cipherStandardName, cipherVersion,
// reused] once the handshake is done, or -EBADF
Napi::Value tls_info(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  socket* s = find_tls(env, id);
  if (!s || (s->flags & sg::SG_F_TLS_HS)) return num(env, -EBADF);
  napi_value arr, v;
  napi_create_array_with_length(env, 8, &arr);
  const char* text = nullptr;
  int code = sg::sg_tls_verify_result(s, &text);
  napi_create_int32(env, code, &v);
  napi_set_element(env, arr, 0, v);
  napi_set_element(env, arr, 1, str_or_null(env, text));
  unsigned alen = 0;
  const unsigned char* alpn = sg::sg_tls_alpn(s, &alen);
  if (alpn) napi_create_string_latin1(env, reinterpret_cast<const char*>(alpn), alen, &v);
  else napi_get_boolean(env, false, &v);
  napi_set_element(env, arr, 2, v);
  napi_set_element(env, arr, 3, str_or_null(env, sg::sg_tls_version(s)));
  const char *name, *standard, *version;
  sg::sg_tls_cipher(s, &name, &standard, &version);
  napi_set_element(env, arr, 4, str_or_null(env, name));
  napi_set_element(env, arr, 5, str_or_null(env, standard));
  napi_set_element(env, arr, 6, str_or_null(env, version));
  napi_get_boolean(env, sg::sg_tls_reused(s), &v);
  napi_set_element(env, arr, 7, v);
  return Napi::Value(env, arr);
}

// tls_peer_cert(id, index): DER of the peer's certificate (0) or of the chain's `index`th, or null
Napi::Value tls_peer_cert(const Napi::CallbackInfo& info) {
  SG_ARGS(2);
  uint32_t id, index;
  if (!u32_arg(env, argv[0], "id", &id) || !u32_arg(env, argv[1], "index", &index)) return thrown();
  socket* s = find_tls(env, id);
  unsigned char* der = nullptr;
  int len = s && !(s->flags & sg::SG_F_TLS_HS) && index < 64 ? sg::sg_tls_peer_cert(s, static_cast<int>(index), &der) : -1;
  return der_buffer(env, der, len);
}

// tls_session(id): DER of the latest session the server issued (or of the current one), or null
Napi::Value tls_session(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  socket* s = find_tls(env, id);
  if (!s || (s->flags & sg::SG_F_TLS_HS)) return der_buffer(env, nullptr, -1);
  if (s->tls->session) {
    auto* copy = static_cast<unsigned char*>(malloc(s->tls->session_len));
    if (copy) memcpy(copy, s->tls->session, s->tls->session_len);
    return der_buffer(env, copy, copy ? static_cast<int>(s->tls->session_len) : -1);
  }
  unsigned char* der = nullptr;
  int len = sg::sg_tls_session_der(s, &der);
  return der_buffer(env, der, len);
}

// tls_error(id): [text, library, reason] of the TLS failure the socket reported, or null
Napi::Value tls_error(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  uint32_t id;
  if (!u32_arg(env, argv[0], "id", &id)) return thrown();
  socket* s = find_tls(env, id);
  if (!s || !s->tls->err[0]) return str_or_null(env, nullptr);
  napi_value arr;
  napi_create_array_with_length(env, 3, &arr);
  napi_set_element(env, arr, 0, str_or_null(env, s->tls->err));
  napi_set_element(env, arr, 1, str_or_null(env, s->tls->err_lib));
  napi_set_element(env, arr, 2, str_or_null(env, s->tls->err_reason));
  return Napi::Value(env, arr);
}

// ---- parked connections (park.cc) ------------------------------------------------------------------------

// A park key: a string of 1..SG_PARK_KEY_MAX characters, copied into `buf`. Other text names no parked
// connection: *fits says so and the caller answers -EPIPE (as for a key that was never parked) or -EINVAL.
bool key_arg(napi_env env, napi_value v, char* buf, bool* fits) {
  if (!is_type(env, v, napi_string)) return type_error(env, "key", "of type string", v);
  size_t len = 0;
  napi_get_value_string_utf8(env, v, nullptr, 0, &len);
  *fits = len > 0 && len <= sg::SG_PARK_KEY_MAX;
  buf[0] = 0;
  if (*fits) napi_get_value_string_utf8(env, v, buf, sg::SG_PARK_KEY_MAX + 1, &len);
  if (*fits && strlen(buf) != len) *fits = false;
  return true;
}

// park_put(key, fd, unread: ArrayBufferView | null, idleMs): 0 | -errno. The table owns fd from then on (on
// failure it stays the caller's).
Napi::Value park_put(const Napi::CallbackInfo& info) {
  SG_ARGS(4);
  char key[sg::SG_PARK_KEY_MAX + 1];
  bool fits;
  int fd;
  void* data = nullptr;
  size_t len = 0;
  double idle;
  if (!key_arg(env, argv[0], key, &fits) || !fd_arg(env, argv[1], &fd) || !opt_view_arg(env, argv[2], "unread", &data, &len) ||
      !int_arg(env, argv[3], "idleMs", 0, 9007199254740991.0, "an integer >= 0 and <= 2^53 - 1", &idle))
    return thrown();
  if (!fits) return num(env, -EINVAL);
  if (len > UINT32_MAX / 2) return num(env, -ENOBUFS);
  return num(env, sg::sg_park_put(key, fd, static_cast<const char*>(data), static_cast<uint32_t>(len), static_cast<int64_t>(idle)));
}

// park_take(key): [fd, unread: Buffer | null] | -EPIPE. The caller owns fd from then on.
Napi::Value park_take(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  char key[sg::SG_PARK_KEY_MAX + 1];
  bool fits;
  if (!key_arg(env, argv[0], key, &fits)) return thrown();
  if (!fits) return num(env, -EPIPE);
  int fd = -1;
  char* unread = nullptr;
  uint32_t len = 0;
  int r = sg::sg_park_take(key, &fd, &unread, &len);
  if (r < 0) return num(env, r);
  napi_value arr, v;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, fd, &v);
  napi_set_element(env, arr, 0, v);
  void* out = nullptr;
  if (len == 0 || napi_create_buffer_copy(env, len, unread, &out, &v) != napi_ok) napi_get_null(env, &v);
  napi_set_element(env, arr, 1, v);
  free(unread);
  return Napi::Value(env, arr);
}

// park_close(key): 0 | -EPIPE (not parked)
Napi::Value park_close(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  char key[sg::SG_PARK_KEY_MAX + 1];
  bool fits;
  if (!key_arg(env, argv[0], key, &fits)) return thrown();
  return num(env, fits ? sg::sg_park_close(key) : -EPIPE);
}

// park_sweep(): parked connections closed because their idle deadline passed
Napi::Value park_sweep(const Napi::CallbackInfo& info) { return num(info.Env(), sg::sg_park_sweep()); }

// park_count(): connections parked in this process
Napi::Value park_count(const Napi::CallbackInfo& info) { return num(info.Env(), sg::sg_park_count()); }

// park_secret(candidate: 32 random bytes): the process's default token key (the first candidate ever offered)
Napi::Value park_secret(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  void* data = nullptr;
  size_t len = 0;
  if (!view_arg(env, argv[0], "candidate", &data, &len)) return thrown();
  if (len != sg::SG_PARK_SECRET_LEN) return range_error(env, "candidate.byteLength", "32", static_cast<double>(len)), thrown();
  const unsigned char* key = sg::sg_park_secret(static_cast<const unsigned char*>(data));
  napi_value v;
  void* out = nullptr;
  napi_create_buffer_copy(env, sg::SG_PARK_SECRET_LEN, key, &out, &v);
  return Napi::Value(env, v);
}

// ---- descriptors across processes (pass.cc) ---------------------------------------------------------------

// A socket path: a string without NUL, copied into malloc'ed memory the caller frees (null when it cannot be one).
bool path_arg(napi_env env, napi_value v, char** out) {
  *out = nullptr;
  if (!is_type(env, v, napi_string)) return type_error(env, "path", "of type string", v);
  size_t len = 0;
  napi_get_value_string_utf8(env, v, nullptr, 0, &len);
  if (len > 4096) return true;
  char* p = static_cast<char*>(malloc(len + 1));
  if (!p) return true;
  napi_get_value_string_utf8(env, v, p, len + 1, &len);
  if (strlen(p) != len) {
    free(p);
    return true;
  }
  *out = p;
  return true;
}

// unix_listen(path): fd | -errno
Napi::Value unix_listen(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  char* path;
  if (!path_arg(env, argv[0], &path)) return thrown();
  int r = path ? sg::sg_unix_listen(path) : -EINVAL;
  free(path);
  return num(env, r);
}

// unix_connect(path, timeoutMs): fd | -errno (-EACCES: another user's socket)
Napi::Value unix_connect(const Napi::CallbackInfo& info) {
  SG_ARGS(2);
  char* path;
  uint32_t ms;
  if (!path_arg(env, argv[0], &path)) return thrown();
  if (!u32_arg(env, argv[1], "timeoutMs", &ms)) return free(path), thrown();
  int r = path ? sg::sg_unix_connect(path, static_cast<int>(ms > 600000 ? 600000 : ms)) : -EINVAL;
  free(path);
  return num(env, r);
}

// unix_accept(fd, waitMs, timeoutMs): fd | -EAGAIN | -EACCES | -errno
Napi::Value unix_accept(const Napi::CallbackInfo& info) {
  SG_ARGS(3);
  int fd;
  uint32_t wait, ms;
  if (!fd_arg(env, argv[0], &fd) || !u32_arg(env, argv[1], "waitMs", &wait) || !u32_arg(env, argv[2], "timeoutMs", &ms)) return thrown();
  return num(env, sg::sg_unix_accept(fd, static_cast<int>(wait > 600000 ? 600000 : wait), static_cast<int>(ms > 600000 ? 600000 : ms)));
}

// unix_send(fd, data, passFd (-1: none)): 0 | -errno
Napi::Value unix_send(const Napi::CallbackInfo& info) {
  SG_ARGS(3);
  int fd;
  void* data = nullptr;
  size_t len = 0;
  int32_t pass;
  if (!fd_arg(env, argv[0], &fd) || !view_arg(env, argv[1], "data", &data, &len) || !i32_arg(env, argv[2], "passFd", &pass)) return thrown();
  if (len > sg::SG_PASS_MAX) return num(env, -EMSGSIZE);
  return num(env, sg::sg_unix_send(fd, static_cast<const char*>(data), static_cast<uint32_t>(len), pass < 0 ? -1 : pass));
}

// unix_recv(fd): [data: Buffer, fd | -1] | -errno. A descriptor received is the caller's to close.
Napi::Value unix_recv(const Napi::CallbackInfo& info) {
  SG_ARGS(1);
  int fd;
  if (!fd_arg(env, argv[0], &fd)) return thrown();
  char* data = nullptr;
  uint32_t len = 0;
  int got = -1;
  int r = sg::sg_unix_recv(fd, &data, &len, &got);
  if (r < 0) return num(env, r);
  napi_value arr, v;
  napi_create_array_with_length(env, 2, &arr);
  void* out = nullptr;
  if (napi_create_buffer_copy(env, len, len ? data : "", &out, &v) != napi_ok) napi_get_null(env, &v);
  napi_set_element(env, arr, 0, v);
  napi_create_int32(env, got, &v);
  napi_set_element(env, arr, 1, v);
  free(data);
  return Napi::Value(env, arr);
}

#undef SG_ARGS

void set(napi_env env, napi_value o, const char* key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, o, key, n);
}

// layout(): everything JS must agree with the core on (native/sg.h is the only copy). Read once per thread by
// src/core/native.ts.
Napi::Value layout(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  napi_value o, rec, sys, ctr, names, str;
  napi_create_object(env, &o);
  set(env, o, "version", sg::SG_LAYOUT_VERSION);
  set(env, o, "recCap", sg::SG_REC_CAP);
  set(env, o, "recInts", sg::SG_REC_INTS);
  set(env, o, "chunk", sg::SG_CHUNK);
  set(env, o, "ctrSlots", sg::SG_CTR_SLOTS);
  set(env, o, "dgramHeader", sg::SG_DGRAM_HDR);
  set(env, o, "slabMin", sg::SG_SLAB_MIN);
  set(env, o, "stageHeader", sg::SG_STAGE_HDR);
  set(env, o, "stageInts", sg::SG_STAGE_INTS);
  set(env, o, "writevMax", sg::SG_WRITEV_MAX);
  set(env, o, "ipMax", sg::SG_IP_MAX);
  set(env, o, "lingerOff", sg::SG_LINGER_OFF);
  set(env, o, "lingerMax", sg::SG_LINGER_MAX);
  set(env, o, "socketSize", sizeof(sg::socket));

  napi_create_object(env, &rec);
  set(env, rec, "data", sg::SG_REC_DATA);
  set(env, rec, "dgram", sg::SG_REC_DGRAM);
  set(env, rec, "eof", sg::SG_REC_EOF);
  set(env, rec, "error", sg::SG_REC_ERROR);
  set(env, rec, "connect", sg::SG_REC_CONNECT);
  set(env, rec, "drain", sg::SG_REC_DRAIN);
  set(env, rec, "shutdown", sg::SG_REC_SHUTDOWN);
  set(env, rec, "session", sg::SG_REC_SESSION);
  napi_set_named_property(env, o, "rec", rec);

  napi_create_object(env, &sys);
  set(env, sys, "read", sg::SG_SYS_READ);
  set(env, sys, "write", sg::SG_SYS_WRITE);
  set(env, sys, "connect", sg::SG_SYS_CONNECT);
  set(env, sys, "shutdown", sg::SG_SYS_SHUTDOWN);
  napi_set_named_property(env, o, "sys", sys);
  constexpr size_t kNames = sizeof(sg::SG_SYS_NAMES) / sizeof(sg::SG_SYS_NAMES[0]);
  napi_create_array_with_length(env, kNames, &names);
  for (size_t i = 0; i < kNames; i++) {
    napi_create_string_utf8(env, sg::SG_SYS_NAMES[i], NAPI_AUTO_LENGTH, &str);
    napi_set_element(env, names, static_cast<uint32_t>(i), str);
  }
  napi_set_named_property(env, o, "syscallNames", names);

  napi_create_object(env, &ctr);
  set(env, ctr, "bytesWritten", sg::SG_CTR_BYTES_WRITTEN);
  set(env, ctr, "bytesRead", sg::SG_CTR_BYTES_READ);
  set(env, ctr, "sendCalls", sg::SG_CTR_SEND_CALLS);
  set(env, ctr, "recvCalls", sg::SG_CTR_RECV_CALLS);
  set(env, ctr, "pending", sg::SG_CTR_PENDING);
  set(env, ctr, "staged", sg::SG_CTR_STAGED);
  napi_set_named_property(env, o, "ctr", ctr);

#if defined(__linux__)
  napi_create_string_utf8(env, "epoll", NAPI_AUTO_LENGTH, &str);
#else
  napi_create_string_utf8(env, "kqueue", NAPI_AUTO_LENGTH, &str);
#endif
  napi_set_named_property(env, o, "backend", str);
  napi_value backends;
  napi_create_object(env, &backends);
  set(env, backends, "uv", sg::SG_BACKEND_UV);
  set(env, backends, "thread", sg::SG_BACKEND_THREAD);
  napi_set_named_property(env, o, "backends", backends);
  return Napi::Value(env, o);
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
#define SG_EXPORT(name) exports.Set(#name, Napi::Function::New(env, name, #name))
  SG_EXPORT(loop_init);
  SG_EXPORT(loop_owner);
  SG_EXPORT(loop_add_chunk);
  SG_EXPORT(loop_ref);
  SG_EXPORT(loop_settle);
  SG_EXPORT(tcp_connect);
  SG_EXPORT(udp_open);
  SG_EXPORT(udp_bind);
  SG_EXPORT(udp_connect);
  SG_EXPORT(udp_disconnect);
  SG_EXPORT(udp_send);
  SG_EXPORT(socket_write);
  SG_EXPORT(socket_writev);
  SG_EXPORT(socket_flush);
  SG_EXPORT(loop_flush);
  SG_EXPORT(socket_shutdown);
  SG_EXPORT(socket_read);
  SG_EXPORT(socket_close);
  SG_EXPORT(socket_detach);
  SG_EXPORT(socket_adopt);
  SG_EXPORT(socket_name);
  SG_EXPORT(socket_so_error);
  SG_EXPORT(socket_getsockopt);
  SG_EXPORT(socket_setsockopt);
  SG_EXPORT(socket_keepalive);
  SG_EXPORT(park_put);
  SG_EXPORT(park_take);
  SG_EXPORT(park_close);
  SG_EXPORT(park_sweep);
  SG_EXPORT(park_count);
  SG_EXPORT(park_secret);
  SG_EXPORT(unix_listen);
  SG_EXPORT(unix_connect);
  SG_EXPORT(unix_accept);
  SG_EXPORT(unix_send);
  SG_EXPORT(unix_recv);
  SG_EXPORT(tls_available);
  SG_EXPORT(tls_context);
  SG_EXPORT(tls_start);
  SG_EXPORT(tls_info);
  SG_EXPORT(tls_peer_cert);
  SG_EXPORT(tls_session);
  SG_EXPORT(tls_error);
  SG_EXPORT(layout);
#undef SG_EXPORT
  return exports;
}

}  // namespace

NODE_API_MODULE(sockguard, init)
