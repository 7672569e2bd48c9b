export { UffdPageServer, type UffdPageServerOptions, type UffdServerExit } from './uffd-page-server.ts';
export { UffdServerExitedError, UffdServerStartError } from './uffd-errors.ts';
export type { ConnectedEvent, PrefetchedEvent, UffdServerStats } from './server-events.ts';
export { intersectRuns, loadWorkingSet, readRecording, recordWorkingSet, WORKING_SET_FILE, WorkingSet, workingSetPath } from './working-set.ts';
export { ensureUffdBinaries, UFFD_PEER_BIN, UFFD_SERVER_BIN } from './native-binaries.ts';
