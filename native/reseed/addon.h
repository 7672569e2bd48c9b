#ifndef SNAPFN_ADDON_H
#define SNAPFN_ADDON_H

#include <node_api.h>

// reseed.c
napi_value snapfn_reseed(napi_env env, napi_callback_info info);
// runner.c
napi_value snapfn_set_heap_limit(napi_env env, napi_callback_info info);
napi_value snapfn_exit_now(napi_env env, napi_callback_info info);

void snapfn_throw(napi_env env, const char *message);

#endif
