// V8, by its exported C++ symbols (node 20 / V8 11.3, x86-64 Itanium ABI).
// Declared here rather than through v8.h so the addon stays plain C; the
// signatures are those of the mangled names. The addon is linked with
// -z now: a node that lacks any of them fails to load it.
#ifndef SNAPFN_V8_SYMBOLS_H
#define SNAPFN_V8_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>

// static v8::Isolate* v8::Isolate::GetCurrent()
extern void *_ZN2v87Isolate10GetCurrentEv(void);
// v8::Local<v8::Context> v8::Isolate::GetCurrentContext(): a handle, i.e. a pointer to the tagged pointer
extern uintptr_t *_ZN2v87Isolate17GetCurrentContextEv(void *isolate);
// v8::base::RandomNumberGenerator* v8::internal::Isolate::random_number_generator()
// (v8::Isolate* and v8::internal::Isolate* are the same address)
extern void *_ZN2v88internal7Isolate23random_number_generatorEv(void *isolate);
// void v8::base::RandomNumberGenerator::SetSeed(int64_t)
extern void _ZN2v84base21RandomNumberGenerator7SetSeedEl(void *rng, int64_t seed);
// static void v8::internal::MathRandom::ResetContext(v8::internal::Context): takes the tagged pointer
extern void _ZN2v88internal10MathRandom12ResetContextENS0_7ContextE(uintptr_t native_context);
// void v8::Isolate::AddNearHeapLimitCallback(size_t (*)(void*, size_t, size_t), void*)
typedef size_t (*near_heap_limit_cb)(void *data, size_t current_limit, size_t initial_limit);
extern void _ZN2v87Isolate24AddNearHeapLimitCallbackEPFmPvmmES1_(void *isolate, near_heap_limit_cb cb, void *data);

#define v8_current_isolate _ZN2v87Isolate10GetCurrentEv
#define v8_current_context _ZN2v87Isolate17GetCurrentContextEv
#define v8_isolate_rng _ZN2v88internal7Isolate23random_number_generatorEv
#define v8_rng_set_seed _ZN2v84base21RandomNumberGenerator7SetSeedEl
#define v8_math_random_reset_context _ZN2v88internal10MathRandom12ResetContextENS0_7ContextE
#define v8_add_near_heap_limit_callback _ZN2v87Isolate24AddNearHeapLimitCallbackEPFmPvmmES1_

#endif
