/*
 * Tiny N-API addon for @kanban-supervisor/reaper.
 *
 *   setChildSubreaper()        -> 0 or errno      prctl(PR_SET_CHILD_SUBREAPER, 1)
 *   isChildSubreaper()         -> boolean         prctl(PR_GET_CHILD_SUBREAPER)
 *   waitNoHang(pid)            -> 0 (still running) | -errno | [exitCode, signal]
 *                                 waitpid(pid, &status, WNOHANG) on exactly that pid (never -1)
 *   pidfdOpen(pid)             -> fd >= 0 | -errno (pidfd_open(2))
 *   pidfdSendSignal(fd, sig)   -> 0 | -errno      (pidfd_send_signal(2))
 *   spawn(file, argv, envp, cwd, logFd)
 *                              -> pid > 0 | -errno
 *                                 posix_spawn(3) in a new session (setsid: own process group),
 *                                 stdin /dev/null, stdout+stderr the log fd, signal mask empty and
 *                                 every signal disposition default, exactly `envp`. glibc's
 *                                 posix_spawn uses clone(CLONE_VM|CLONE_VFORK): it costs the same
 *                                 whatever the size of this process, where fork() copies its page
 *                                 tables (about 1-2 ms for a Node process). Exec errors (ENOENT,
 *                                 EACCES, ENOEXEC) come back as the return value. The caller
 *                                 collects the exit with waitNoHang(pid) on exactly that pid.
 *   sdNotify(socketPath, message)
 *                              -> 0 | -errno
 *                                 one datagram to the service manager's NOTIFY_SOCKET (sd_notify(3)
 *                                 protocol): an AF_UNIX SOCK_DGRAM socket, non-blocking, sendto with
 *                                 MSG_DONTWAIT (a full queue is -EAGAIN, never a wait), closed again.
 *                                 "@name" is an abstract socket (leading NUL byte, no trailing one).
 *   peerUid(fd)                -> uid >= 0 | -errno
 *                                 the user id of the process at the other end of a connected
 *                                 AF_UNIX socket, as the kernel recorded it when it connected
 *                                 (getsockopt SO_PEERCRED); -ENOSYS where there is no SO_PEERCRED.
 *
 * Everything is non-blocking. On non-Linux systems the prctl/pidfd calls report ENOSYS.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
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


/* Free a NULL-terminated array of strings built by get_string_array. */
static void free_strings(char **arr) {
  if (!arr) return;
  for (char **p = arr; *p; p++) free(*p);
  free(arr);
}

static char *get_string(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *buf = malloc(len + 1);
  if (!buf) return NULL;
  if (napi_get_value_string_utf8(env, v, buf, len + 1, &len) != napi_ok || strlen(buf) != len) {
    free(buf); /* not a string, or it holds a NUL byte */
    return NULL;
  }
  return buf;
}

static char **get_string_array(napi_env env, napi_value v) {
  bool is_array = false;
  uint32_t n = 0;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array) return NULL;
  if (napi_get_array_length(env, v, &n) != napi_ok) return NULL;
  char **out = calloc((size_t)n + 1, sizeof(char *));
  if (!out) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    if (napi_get_element(env, v, i, &el) != napi_ok || !(out[i] = get_string(env, el))) {
      free_strings(out);
      return NULL;
    }
  }
  return out;
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
#define SPAWN_CAN_CHDIR 1
#else
#define SPAWN_CAN_CHDIR 0
#endif

typedef struct {
  char *file;
  char **argv;
  char **envp;
  char *cwd;
  int log_fd;
} spawn_req;

static void free_req(spawn_req *r) {
  if (!r) return;
  free(r->file);
  free_strings(r->argv);
  free_strings(r->envp);
  free(r->cwd);
  free(r);
}

/* Copy the JS arguments into C memory. NULL after throwing a TypeError. */
static spawn_req *parse_spawn_args(napi_env env, napi_callback_info info) {
  napi_value args[5];
  size_t argc = 5;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 5) {
    napi_throw_type_error(env, NULL, "spawn(file, argv, envp, cwd, logFd)");
    return NULL;
  }
  spawn_req *r = calloc(1, sizeof(spawn_req));
  if (!r) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  r->file = get_string(env, args[0]);
  r->argv = get_string_array(env, args[1]);
  r->envp = get_string_array(env, args[2]);
  napi_valuetype cwd_type;
  napi_typeof(env, args[3], &cwd_type);
  if (cwd_type == napi_string) r->cwd = get_string(env, args[3]);
  int64_t log_fd = -1;
  napi_get_value_int64(env, args[4], &log_fd);
  r->log_fd = (int)log_fd;
  if (!r->file || !r->argv || !r->argv[0] || !r->envp || (cwd_type == napi_string && !r->cwd) || log_fd < 0) {
    free_req(r);
    napi_throw_type_error(env, NULL, "spawn: file, argv, envp must be strings without NUL bytes, argv non-empty, logFd >= 0");
    return NULL;
  }
  return r;
}

/* posix_spawn with the worker contract. */
static int do_spawn(const spawn_req *r) {
  int rc;
  pid_t pid = -1;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_init(&fa);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
#ifdef POSIX_SPAWN_SETSID
  flags |= POSIX_SPAWN_SETSID;
#else
  flags |= POSIX_SPAWN_SETPGROUP;
  posix_spawnattr_setpgroup(&attr, 0);
#endif
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  rc = posix_spawnattr_setflags(&attr, flags);
  if (!rc) rc = posix_spawnattr_setsigmask(&attr, &none);
  if (!rc) rc = posix_spawnattr_setsigdefault(&attr, &all);
  if (!rc) rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, r->log_fd, 1);
  if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, r->log_fd, 2);
#if SPAWN_CAN_CHDIR
  if (!rc && r->cwd) rc = posix_spawn_file_actions_addchdir_np(&fa, r->cwd);
#else
  if (!rc && r->cwd) rc = ENOSYS; /* spawnCanChdir is false: the caller uses Node's spawn for a cwd */
#endif
  if (!rc) rc = posix_spawn(&pid, r->file, &fa, &attr, r->argv, r->envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc ? -rc : (int)pid;
}

static napi_value Spawn(napi_env env, napi_callback_info info) {
  spawn_req *r = parse_spawn_args(env, info);
  if (!r) return NULL;
  int result = do_spawn(r);
  free_req(r);
  return make_int(env, result);
}

/* sd_notify(3) without libsystemd: the whole message in one datagram, nothing that can block. */
static int notify_send(const char *path, const char *msg, size_t msg_len) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  size_t path_len = strlen(path);
  if (path_len < 2 || (path[0] != '/' && path[0] != '@')) return -EAFNOSUPPORT; /* also vsock:... */
  if (path_len >= sizeof(sa.sun_path)) return -ENAMETOOLONG;
  memcpy(sa.sun_path, path, path_len);
  socklen_t sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
  if (path[0] == '@') sa.sun_path[0] = '\0'; /* abstract: the name's length, no NUL terminator */
  else sa_len += 1;
#ifdef SOCK_NONBLOCK
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
#else
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (fd >= 0 && (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0)) {
    int e = errno;
    close(fd);
    return -e;
  }
#endif
  if (fd < 0) return -errno;
  int flags = MSG_DONTWAIT;
#ifdef MSG_NOSIGNAL
  flags |= MSG_NOSIGNAL;
#endif
  ssize_t n;
  do {
    n = sendto(fd, msg, msg_len, flags, (const struct sockaddr *)&sa, sa_len);
  } while (n < 0 && errno == EINTR);
  int rc = n < 0 ? -errno : ((size_t)n == msg_len ? 0 : -EMSGSIZE);
  close(fd);
  return rc;
}

static napi_value SdNotify(napi_env env, napi_callback_info info) {
  napi_value args[2];
  size_t argc = 2;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "sdNotify(socketPath, message)");
    return NULL;
  }
  char *path = get_string(env, args[0]);
  char *msg = get_string(env, args[1]);
  int rc;
  if (!path || !msg || !msg[0]) {
    rc = -EINVAL; /* not strings, a NUL byte inside, or an empty message */
  } else {
    rc = notify_send(path, msg, strlen(msg));
  }
  free(path);
  free(msg);
  return make_int(env, rc);
}

static napi_value PeerUid(napi_env env, napi_callback_info info) {
  int64_t v[1];
  if (!get_int_args(env, info, 1, v)) return NULL;
#if defined(__linux__) && defined(SO_PEERCRED)
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt((int)v[0], SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return make_int(env, -errno);
  if (len != sizeof(cred)) return make_int(env, -EINVAL);
  return make_int(env, (int64_t)cred.uid);
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
    { "spawn", NULL, Spawn, NULL, NULL, NULL, napi_default, NULL },
    { "sdNotify", NULL, SdNotify, NULL, NULL, NULL, napi_default, NULL },
    { "peerUid", NULL, PeerUid, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  napi_value can_chdir;
  napi_get_boolean(env, SPAWN_CAN_CHDIR, &can_chdir);
  napi_set_named_property(env, exports, "spawnCanChdir", can_chdir);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
