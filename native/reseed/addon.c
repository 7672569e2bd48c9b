// reseed.node: what a node process restored from a snapshot needs and
// JavaScript cannot do. The sandbox's node is a copy of the host's binary,
// which exports OpenSSL's and V8's symbols, so this Node-API addon reaches
// them directly.
//
// reseed()          fresh randomness after every restore (reseed.c)
// setHeapLimit(mb)  the eval runner's per-request V8 heap limit (runner.c)
// exitNow(code)     the eval runner's exit without node's teardown (runner.c)
#include "addon.h"

void snapfn_throw(napi_env env, const char *message) {
  napi_throw_error(env, "ERR_SNAPFN_ADDON", message);
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"reseed", NULL, snapfn_reseed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setHeapLimit", NULL, snapfn_set_heap_limit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"exitNow", NULL, snapfn_exit_now, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
