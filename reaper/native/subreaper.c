/*
 * Tiny N-API addon for @kanban-supervisor/reaper.
 *
 *   setChildSubreaper()        -> 0 or errno      prctl(PR_SET_CHILD_SUBREAPER, 1)
 *   isChildSubreaper()         -> boolean         prctl(PR_GET_CHILD_SUBREAPER)
 *   waitNoHang(pid)            -> 0 (still running) | -errno | [exitCode, signal]
 *                                 waitpid(pid, &status, WNOHANG) on exactly that pid (never -1)
 *   pidfdOpen(pid)             -> fd >= 0 | -errno (pidfd_open(2))
 *   pidfdSendSignal(fd, sig)   -> 0 | -errno      (pidfd_send_signal(2))
 *
 * Everything is non-blocking. On non-Linux systems the prctl/pidfd calls report ENOSYS.
 */
#include <node_api.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif
#ifndef PR_GET_CHILD_SUBREAPER
#define PR_GET_CHILD_SUBREAPER 37
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#endif

static napi_value make_int(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

static int get_int_args(napi_env env, napi_callback_info info, size_t want, int64_t *vals) {
  napi_value argv[2];
  size_t argc = 2;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "expected integer arguments");
    return 0;
  }
  for (size_t i = 0; i < want; i++) {
    if (napi_get_value_int64(env, argv[i], &vals[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "expected integer arguments");
      return 0;
    }
  }
  return 1;
}

static napi_value SetChildSubreaper(napi_env env, napi_callback_info info) {
  (void)info;
#ifdef __linux__
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0) return make_int(env, 0);
  return make_int(env, errno);
#else
  return make_int(env, ENOSYS);
#endif
}

static napi_value IsChildSubreaper(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  int flag = 0;
#ifdef __linux__
  if (prctl(PR_GET_CHILD_SUBREAPER, (unsigned long)&flag, 0, 0, 0) != 0) flag = 0;
#endif
  napi_get_boolean(env, flag != 0, &out);
  return out;
}

static napi_value WaitNoHang(napi_env env, napi_callback_info info) {
  int64_t a[1];
  if (!get_int_args(env, info, 1, a)) return NULL;
  if (a[0] <= 0) return make_int(env, -EINVAL); /* never waitpid(-1) / (0) / (-pgid) */
  int status = 0;
  pid_t r;
  do {
    r = waitpid((pid_t)a[0], &status, WNOHANG);
  } while (r == -1 && errno == EINTR);
  if (r == 0) return make_int(env, 0);
  if (r < 0) return make_int(env, -errno);
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, make_int(env, WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  napi_set_element(env, arr, 1, make_int(env, WIFSIGNALED(status) ? WTERMSIG(status) : 0));
  return arr;
}

static napi_value PidfdOpen(napi_env env, napi_callback_info info) {
  int64_t a[1];
  if (!get_int_args(env, info, 1, a)) return NULL;
  if (a[0] <= 0) return make_int(env, -EINVAL);
#ifdef __linux__
  long fd = syscall(SYS_pidfd_open, (pid_t)a[0], 0);
  if (fd < 0) return make_int(env, -errno);
  return make_int(env, fd);
#else
  return make_int(env, -ENOSYS);
#endif
}

static napi_value PidfdSendSignal(napi_env env, napi_callback_info info) {
  int64_t a[2];
  if (!get_int_args(env, info, 2, a)) return NULL;
#ifdef __linux__
  if (syscall(SYS_pidfd_send_signal, (int)a[0], (int)a[1], NULL, 0) == 0) return make_int(env, 0);
  return make_int(env, -errno);
#else
  return make_int(env, -ENOSYS);
#endif
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "setChildSubreaper", NULL, SetChildSubreaper, NULL, NULL, NULL, napi_default, NULL },
    { "isChildSubreaper", NULL, IsChildSubreaper, NULL, NULL, NULL, napi_default, NULL },
    { "waitNoHang", NULL, WaitNoHang, NULL, NULL, NULL, napi_default, NULL },
    { "pidfdOpen", NULL, PidfdOpen, NULL, NULL, NULL, napi_default, NULL },
    { "pidfdSendSignal", NULL, PidfdSendSignal, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
