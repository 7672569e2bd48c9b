export { FirecrackerApi, FirecrackerApiError, type FirecrackerApiOptions } from './api-client.ts';
export * as FirecrackerSchemas from './api-schemas.ts';
export { FirecrackerDriver, FirecrackerUnavailableError, type FirecrackerDriverOptions } from './firecracker-driver.ts';
export { detectFirecracker, type FirecrackerSupport } from './host-support.ts';
export { firecrackerDriverIfSupported } from './select-driver.ts';
