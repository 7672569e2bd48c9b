// For the eval runner (runtime/eval/js-runner.cjs), a node process started
// before the checkpoint that runs one snippet after the restore.
#include <unistd.h>

#include "addon.h"
#include "v8-symbols.h"

// A running V8 takes no new --max-old-space-size. The runner starts with the
// smallest limit a request can ask for; when V8 reaches it, it asks this
// callback, which raises it once to the request's limit. Reaching that one
// is then the usual "JavaScript heap out of memory".
static size_t target_heap_limit;

static size_t raise_heap_limit(void *data, size_t current_limit, size_t initial_limit) {
  (void)data;
  (void)initial_limit;
  return target_heap_limit > current_limit ? target_heap_limit : current_limit;
}

static int number_arg(napi_env env, napi_callback_info info, double *out) {
  size_t argc = 1;
  napi_value argv[1];
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 1 && napi_get_value_double(env, argv[0], out) == napi_ok;
}

napi_value snapfn_set_heap_limit(napi_env env, napi_callback_info info) {
  double mb = 0;
  if (!number_arg(env, info, &mb) || !(mb >= 1 && mb <= 1 << 20)) {
    snapfn_throw(env, "setHeapLimit takes a number of MiB");
    return NULL;
  }
  int first = target_heap_limit == 0;
  target_heap_limit = (size_t)mb * 1024 * 1024;
  if (first) v8_add_near_heap_limit_callback(v8_current_isolate(), raise_heap_limit, NULL);
  return NULL;
}

// node's own exit disposes the V8 heap, joins its threads and runs OpenSSL's
// and V8's destructors: ~10 ms under gVisor's ptrace platform, on every
// evaluation. The runner writes its output synchronously and is thrown away
// with its sandbox, so it exits straight away instead.
napi_value snapfn_exit_now(napi_env env, napi_callback_info info) {
  double code = 0;
  if (!number_arg(env, info, &code)) code = 0;
  _exit((int)code & 0xff);
  return NULL;
}
