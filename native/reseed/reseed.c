// Fresh randomness after a restore. Every sandbox restored from one template
// starts with the same memory, so every random state inside node is the same
// in all of them: OpenSSL's DRBGs (key generation, TLS, crypto.randomBytes),
// V8's random number generator and Math.random's state, and, in a VM, the
// guest kernel's CRNG. reseed() refreshes all of them; docs/engine.md
// ("Randomness after a restore") has the reasoning and the sources.

#define _GNU_SOURCE
// RAND_get_rand_method: the one way to tell that no engine replaced the default method.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "addon.h"
#include "v8-symbols.h"

// Additional input for OpenSSL's primary DRBG (well under its max_adinlen), then the V8 seed.
#define ADDIN_BYTES 48
#define SEED_BYTES (ADDIN_BYTES + 8)

static int fill_random(unsigned char *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = getrandom(buf + off, len - off, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    off += (size_t)n;
  }
  return 1;
}

/*
 * Under a VM driver the guest kernel's CRNG is part of the VM snapshot too:
 * until its next scheduled reseed (up to a minute) getrandom() would return
 * the same bytes in every VM restored from one snapshot. RNDRESEEDCRNG
 * rekeys it now from the input pool and the CPU's RDSEED/RDRAND, which a
 * restored VM executes afresh. gVisor's getrandom() draws from the host on
 * every call and does not implement the ioctl (ENOTTY): nothing to do there.
 * Returns 1 when the kernel was reseeded, 0 when this kernel has no such thing.
 */
static int reseed_kernel(void) {
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  int ok = ioctl(fd, RNDRESEEDCRNG) == 0;
  close(fd);
  return ok;
}

static int drbg_reseed_counter(EVP_RAND_CTX *drbg, unsigned int *out) {
  OSSL_PARAM params[2] = {OSSL_PARAM_construct_uint(OSSL_DRBG_PARAM_RESEED_COUNTER, out), OSSL_PARAM_construct_end()};
  return EVP_RAND_CTX_get_params(drbg, params);
}

static int read_counters(EVP_RAND_CTX *const drbgs[3], unsigned int out[3]) {
  for (int i = 0; i < 3; i++)
    if (!drbg_reseed_counter(drbgs[i], &out[i])) return 0;
  return 1;
}

/*
 * OpenSSL 3.0 with its default method: reseeding the primary DRBG pulls fresh
 * entropy from its seed source (getrandom) and mixes in `addin` (this is what
 * RAND_add does, minus the return value). Every per-thread public and private
 * DRBG compares its parent's reseed counter on its next generate and reseeds
 * from the primary when it changed. Both steps are checked here, for this
 * thread, rather than trusted. Returns NULL or what went wrong.
 */
static const char *reseed_openssl(const unsigned char *addin, size_t addin_len) {
  if (RAND_get_rand_method() != RAND_OpenSSL()) return "OpenSSL has a non-default RAND method: its state cannot be refreshed";
  EVP_RAND_CTX *const drbgs[3] = {RAND_get0_primary(NULL), RAND_get0_public(NULL), RAND_get0_private(NULL)};
  if (!drbgs[0] || !drbgs[1] || !drbgs[2]) return "OpenSSL's DRBGs are unavailable";
  unsigned int before[3], after[3];
  if (!read_counters(drbgs, before)) return "cannot read OpenSSL's DRBG reseed counters";
  if (EVP_RAND_reseed(drbgs[0], 0, NULL, 0, addin, addin_len) != 1) return "reseeding OpenSSL's primary DRBG failed";
  // One byte from each makes this thread's DRBGs reseed now, off the request path.
  unsigned char probe;
  if (RAND_bytes(&probe, 1) != 1 || RAND_priv_bytes(&probe, 1) != 1) return "OpenSSL's DRBGs fail after the reseed";
  if (!read_counters(drbgs, after)) return "cannot read OpenSSL's DRBG reseed counters";
  for (int i = 0; i < 3; i++)
    if (after[i] == before[i]) return "an OpenSSL DRBG did not reseed";
  return NULL;
}

/*
 * V8: the isolate's generator seeds Math.random in every new context (vm,
 * realms) and the current context's Math.random state is reset, so its next
 * call seeds itself from that generator. Workers get new isolates, seeded
 * through OpenSSL (node's V8 entropy source) when they start.
 */
static void reseed_v8(const unsigned char *seed) {
  void *isolate = v8_current_isolate();
  int64_t s;
  memcpy(&s, seed, sizeof s);
  v8_rng_set_seed(v8_isolate_rng(isolate), s);
  uintptr_t *context = v8_current_context(isolate);
  if (context) v8_math_random_reset_context(*context);
}

napi_value snapfn_reseed(napi_env env, napi_callback_info info) {
  (void)info;
  int kernel = reseed_kernel();
  unsigned char seed[SEED_BYTES];
  if (!fill_random(seed, sizeof seed)) {
    snapfn_throw(env, "getrandom() failed");
    return NULL;
  }
  const char *failed = reseed_openssl(seed, ADDIN_BYTES);
  if (!failed) reseed_v8(seed + ADDIN_BYTES);
  OPENSSL_cleanse(seed, sizeof seed);
  if (failed) {
    snapfn_throw(env, failed);
    return NULL;
  }
  napi_value result, flag;
  napi_create_object(env, &result);
  napi_get_boolean(env, kernel, &flag);
  napi_set_named_property(env, result, "kernelReseeded", flag);
  return result;
}
