import type { EvalServiceOptions } from './eval-service.ts';

/** The environment's say on evaluation: SNAPFN_EVAL_ALLOW_NETWORK (default off), SNAPFN_EVAL_POOL_SIZE (default 1). */
export function evalOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): Pick<EvalServiceOptions, 'allowNetwork' | 'poolSize'> {
  const allow = (env.SNAPFN_EVAL_ALLOW_NETWORK ?? '').trim().toLowerCase();
  if (allow !== '' && !['0', '1', 'true', 'false', 'yes', 'no'].includes(allow)) {
    throw new Error(`SNAPFN_EVAL_ALLOW_NETWORK must be true or false, not "${env.SNAPFN_EVAL_ALLOW_NETWORK}"`);
  }
  const pool = (env.SNAPFN_EVAL_POOL_SIZE ?? '').trim();
  const poolSize = pool === '' ? 1 : Number(pool);
  if (!Number.isInteger(poolSize) || poolSize < 0 || poolSize > 32) throw new Error(`SNAPFN_EVAL_POOL_SIZE must be an integer 0-32, not "${pool}"`);
  return { allowNetwork: ['1', 'true', 'yes'].includes(allow), poolSize };
}
