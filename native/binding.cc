// N-API glue: converts arguments and results, nothing else. Arguments are validated in TypeScript before they
// cross (src/native.ts describes every export), so here a wrong type is a programming error and answers -EINVAL.
// Every function returns a number: >= 0 on success, a negative errno on failure.
#include <errno.h>
#include <napi.h>
#include <string.h>

#include "sg.h"

namespace {

using sg::loop;
using sg::socket;

inline Napi::Value num(Napi::Env env, double v) { return Napi::Number::New(env, v); }

inline loop* get_loop(Napi::Env env) { return sg::sg_loop_get(env); }

inline socket* get_socket(const Napi::CallbackInfo& info, loop** out_lp = nullptr) {
  loop* lp = get_loop(info.Env());
  if (out_lp) *out_lp = lp;
  if (!lp) return nullptr;
  return sg::sg_loop_find(lp, info[0].As<Napi::Number>().Uint32Value());
}

// For operations whose effect depends on what is already queued (writes, shutdown, close, detach): staged
// writes are older, so they enter the queues first.
inline socket* get_socket_in_order(const Napi::CallbackInfo& info) {
  loop* lp = get_loop(info.Env());
  if (!lp) return nullptr;
  sg::sg_loop_unstage(lp);
  return sg::sg_loop_find(lp, info[0].As<Napi::Number>().Uint32Value());
}

// The loop and the free socket id (argument 0) for an operation that creates a socket: 0 or -errno.
inline int new_slot(const Napi::CallbackInfo& info, loop** lp, uint32_t* id) {
  *lp = get_loop(info.Env());
  if (!*lp) return -EBADF;
  *id = info[0].As<Napi::Number>().Uint32Value();
  return sg::sg_loop_find(*lp, *id) ? -EEXIST : 0;
}

// Bytes of a Buffer / Uint8Array / any ArrayBufferView.
inline bool view_of(napi_env env, napi_value v, void** data, size_t* len) {
  napi_typedarray_type t;
  napi_value ab;
  size_t off, n;
  if (napi_get_typedarray_info(env, v, &t, &n, data, &ab, &off) == napi_ok) {
    static const size_t widths[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};
    *len = n * (static_cast<size_t>(t) < sizeof(widths) / sizeof(widths[0]) ? widths[t] : 1);
    return true;
  }
  return napi_get_dataview_info(env, v, len, data, &ab, &off) == napi_ok;
}

// loop_init(slab: ArrayBuffer, records: Int32Array, dispatch: (count) => void, stage: ArrayBuffer,
//           stageRecords: Int32Array): 0 | -errno
Napi::Value loop_init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (get_loop(env)) return num(env, 0);
  loop* lp = nullptr;
  int r = sg::sg_loop_create(env, info[0], info[1], info[2], &lp);
  if (r == 0 && info.Length() >= 5) r = sg::sg_loop_set_stage(env, lp, info[3], info[4]);
  return num(env, r);
}

// loop_add_chunk(counters: ArrayBuffer): number of chunks | -errno
Napi::Value loop_add_chunk(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  loop* lp = get_loop(env);
  if (!lp) return num(env, -EBADF);
  return num(env, sg::sg_loop_add_chunk(env, lp, info[0]));
}

// loop_ref(on: boolean)
Napi::Value loop_ref(const Napi::CallbackInfo& info) {
  loop* lp = get_loop(info.Env());
  if (lp) sg::sg_loop_set_ref(lp, info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

// tcp_connect(id, family, ip, port, highWaterMark): 0 | -errno
Napi::Value tcp_connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  loop* lp;
  uint32_t id;
  int r = new_slot(info, &lp, &id);
  if (r < 0) return num(env, r);
  int family = info[1].As<Napi::Number>().Int32Value();
  std::string ip = info[2].As<Napi::String>().Utf8Value();
  int port = info[3].As<Napi::Number>().Int32Value();
  uint32_t hwm = info[4].As<Napi::Number>().Uint32Value();
  int err = 0;
  socket* s = sg::sg_tcp_connect(lp, id, family, ip.c_str(), port, hwm, &err);
  return num(env, s ? 0 : err);
}

// udp_open(id, family): 0 | -errno
Napi::Value udp_open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  loop* lp;
  uint32_t id;
  int r = new_slot(info, &lp, &id);
  if (r < 0) return num(env, r);
  int err = 0;
  socket* s = sg::sg_udp_open(lp, id, info[1].As<Napi::Number>().Int32Value(), &err);
  return num(env, s ? 0 : err);
}

// udp_bind(id, family, ip, port) / udp_connect(id, family, ip, port): 0 | -errno
Napi::Value udp_addr_op(const Napi::CallbackInfo& info, bool connect) {
  Napi::Env env = info.Env();
  socket* s = get_socket(info);
  if (!s) return num(env, -EBADF);
  struct sockaddr_storage ss;
  socklen_t len;
  std::string ip = info[2].As<Napi::String>().Utf8Value();
  int r = sg::sys_make_addr(info[1].As<Napi::Number>().Int32Value(), ip.c_str(),
                            info[3].As<Napi::Number>().Int32Value(), &ss, &len);
  if (r < 0) return num(env, r);
  r = connect ? sg::sys_connect(s->fd, reinterpret_cast<struct sockaddr*>(&ss), len)
              : sg::sys_bind(s->fd, reinterpret_cast<struct sockaddr*>(&ss), len);
  return num(env, r);
}
Napi::Value udp_bind(const Napi::CallbackInfo& info) { return udp_addr_op(info, false); }
Napi::Value udp_connect(const Napi::CallbackInfo& info) { return udp_addr_op(info, true); }

// udp_disconnect(id): 0 | -errno
Napi::Value udp_disconnect(const Napi::CallbackInfo& info) {
  socket* s = get_socket(info);
  return num(info.Env(), s ? sg::sys_disconnect(s->fd) : -EBADF);
}

// udp_send(id, data, ip | null, port, family): bytes sent | -errno
Napi::Value udp_send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socket* s = get_socket(info);
  if (!s) return num(env, -EBADF);
  void* data;
  size_t len;
  if (!view_of(env, info[1], &data, &len)) return num(env, -EINVAL);
  if (info[2].IsString()) {
    std::string ip = info[2].As<Napi::String>().Utf8Value();
    return num(env, static_cast<double>(sg::sg_udp_send(s, data, len, ip.c_str(), info[3].As<Napi::Number>().Int32Value(),
                                                        info[4].As<Napi::Number>().Int32Value())));
  }
  return num(env, static_cast<double>(sg::sg_udp_send(s, data, len, nullptr, 0, 0)));
}

// socket_write(id, data): bytes pending | -errno
Napi::Value socket_write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socket* s = get_socket_in_order(info);
  if (!s) return num(env, -EBADF);
  struct iovec v;
  size_t len;
  napi_value holder = info[1];
  if (!view_of(env, holder, &v.iov_base, &len)) return num(env, -EINVAL);
  v.iov_len = len;
  return num(env, static_cast<double>(sg::sg_write(s, &v, &holder, 1)));
}

// socket_writev(id, chunks: ArrayBufferView[]): bytes pending | -errno
Napi::Value socket_writev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socket* s = get_socket_in_order(info);
  if (!s) return num(env, -EBADF);
  Napi::Array arr = info[1].As<Napi::Array>();
  uint32_t n = arr.Length();
  std::vector<struct iovec> v(n);
  std::vector<napi_value> holders(n);
  for (uint32_t i = 0; i < n; i++) {
    size_t len;
    if (napi_get_element(env, arr, i, &holders[i]) != napi_ok || !view_of(env, holders[i], &v[i].iov_base, &len))
      return num(env, -EINVAL);
    v[i].iov_len = len;
  }
  return num(env, static_cast<double>(sg::sg_write(s, v.data(), holders.data(), static_cast<int>(n))));
}

// socket_shutdown(id): 1 done now | 0 after the queue drains (SHUTDOWN record) | -errno
Napi::Value socket_shutdown(const Napi::CallbackInfo& info) {
  socket* s = get_socket_in_order(info);
  return num(info.Env(), s ? sg::sg_shutdown(s) : -EBADF);
}

// socket_read(id, on): pause / resume reading
Napi::Value socket_read(const Napi::CallbackInfo& info) {
  socket* s = get_socket(info);
  if (!s) return num(info.Env(), -EBADF);
  sg::sg_set_reading(s, info[1].ToBoolean().Value());
  return num(info.Env(), 0);
}

// socket_close(id): 0 | -EBADF
Napi::Value socket_close(const Napi::CallbackInfo& info) {
  socket* s = get_socket_in_order(info);
  if (!s) return num(info.Env(), -EBADF);
  sg::sg_close(s);
  return num(info.Env(), 0);
}

// socket_detach(id): fd | -errno. The socket leaves the loop; its descriptor stays open for the new owner.
Napi::Value socket_detach(const Napi::CallbackInfo& info) {
  socket* s = get_socket_in_order(info);
  if (!s) return num(info.Env(), -EBADF);
  if (sg::sg_pending(s) != 0) return num(info.Env(), -EBUSY);
  return num(info.Env(), sg::sg_detach(s));
}

// socket_adopt(id, fd, highWaterMark): 0 | -errno
Napi::Value socket_adopt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  loop* lp;
  uint32_t id;
  int r = new_slot(info, &lp, &id);
  if (r < 0) return num(env, r);
  int err = 0;
  socket* s = sg::sg_adopt(lp, id, info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Uint32Value(), &err);
  return num(env, s ? 0 : err);
}

// socket_name(id, peer): [family, address, port] | -errno
Napi::Value socket_name(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socket* s = get_socket(info);
  if (!s) return num(env, -EBADF);
  struct sockaddr_storage ss;
  socklen_t len;
  int r = sg::sys_name(s->fd, info[1].ToBoolean().Value() ? 1 : 0, &ss, &len);
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
  socket* s = get_socket(info);
  return num(info.Env(), s ? sg::sys_so_error(s->fd) : -EBADF);
}

// socket_getsockopt(id, level, name): value | -errno. SO_LINGER answers the linger seconds when on, else -1
// (so -1 is ambiguous with -EPERM only for SO_LINGER, which cannot fail that way on a live socket).
Napi::Value socket_getsockopt(const Napi::CallbackInfo& info) {
  socket* s = get_socket(info);
  if (!s) return num(info.Env(), -EBADF);
  int level = info[1].As<Napi::Number>().Int32Value();
  int name = info[2].As<Napi::Number>().Int32Value();
  if (level == SOL_SOCKET && name == SO_LINGER) {
    int on = 0, secs = 0;
    int r = sg::sys_get_linger(s->fd, &on, &secs);
    return num(info.Env(), r < 0 ? r : (on ? secs : -1));
  }
  int v = 0;
  int r = sg::sys_getsockopt_int(s->fd, level, name, &v);
  return num(info.Env(), r < 0 ? r : v);
}

// socket_setsockopt(id, level, name, value): 0 | -errno. SO_LINGER: value < 0 turns lingering off.
Napi::Value socket_setsockopt(const Napi::CallbackInfo& info) {
  socket* s = get_socket(info);
  if (!s) return num(info.Env(), -EBADF);
  int level = info[1].As<Napi::Number>().Int32Value();
  int name = info[2].As<Napi::Number>().Int32Value();
  int value = info[3].As<Napi::Number>().Int32Value();
  if (level == SOL_SOCKET && name == SO_LINGER)
    return num(info.Env(), sg::sys_set_linger(s->fd, value >= 0 ? 1 : 0, value >= 0 ? value : 0));
  return num(info.Env(), sg::sys_setsockopt_int(s->fd, level, name, value));
}

// socket_keepalive(id, on, idleSeconds): 0 | -errno
Napi::Value socket_keepalive(const Napi::CallbackInfo& info) {
  socket* s = get_socket(info);
  if (!s) return num(info.Env(), -EBADF);
  return num(info.Env(), sg::sys_set_keepalive(s->fd, info[1].ToBoolean().Value() ? 1 : 0,
                                               info[2].As<Napi::Number>().Int32Value()));
}

// constants(): layout facts JS must agree with.
Napi::Value layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("recCap", num(env, sg::SG_REC_CAP));
  o.Set("chunk", num(env, sg::SG_CHUNK));
  o.Set("ctrSlots", num(env, sg::SG_CTR_SLOTS));
  o.Set("dgramHeader", num(env, sg::SG_DGRAM_HDR));
  o.Set("socketSize", num(env, sizeof(sg::socket)));
#if defined(__linux__)
  o.Set("backend", Napi::String::New(env, "epoll"));
#else
  o.Set("backend", Napi::String::New(env, "kqueue"));
#endif
  return o;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
#define SG_EXPORT(name) exports.Set(#name, Napi::Function::New(env, name, #name))
  SG_EXPORT(loop_init);
  SG_EXPORT(loop_add_chunk);
  SG_EXPORT(loop_ref);
  SG_EXPORT(tcp_connect);
  SG_EXPORT(udp_open);
  SG_EXPORT(udp_bind);
  SG_EXPORT(udp_connect);
  SG_EXPORT(udp_disconnect);
  SG_EXPORT(udp_send);
  SG_EXPORT(socket_write);
  SG_EXPORT(socket_writev);
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
  SG_EXPORT(layout);
#undef SG_EXPORT
  return exports;
}

}  // namespace

NODE_API_MODULE(sockguard, init)
