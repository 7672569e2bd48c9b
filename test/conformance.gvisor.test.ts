// The driver conformance suite (test/conformance/) on gVisor: every case.
import { conformanceSuite } from './conformance/suite.ts';

conformanceSuite({ driver: 'gvisor', timeoutMs: 10 * 60_000 });
