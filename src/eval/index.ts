export { EvalService, type EvalServiceOptions } from './eval-service.ts';
export { evalOptionsFromEnv } from './eval-options.ts';
export { evalRoutes } from './routes.ts';
export { RUNTIME_LANGUAGES, type RuntimeLanguage } from './eval-bundle.ts';
