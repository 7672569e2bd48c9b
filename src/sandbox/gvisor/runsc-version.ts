import { execa } from 'execa';

/** The runsc on this host: Debian 12 has 0.0~20221219 (ptrace), Debian 13 0.0~20240729 (systrap). */
export interface RunscInfo {
  /** As `runsc --version` prints it, e.g. `0.0~20221219.0` or `release-20240729.0`. */
  version: string;
  /** The platform runsc uses when none is given (snapfn gives none): ptrace, systrap or kvm. */
  platform: string;
}

let detected: Promise<RunscInfo> | undefined;

/**
 * Read off the binary, never assumed: the version from `runsc --version`,
 * the default platform from `runsc flags` ("... (default "ptrace")").
 */
export function detectRunsc(): Promise<RunscInfo> {
  detected ??= (async () => {
    const [version, flags] = await Promise.all([execa('runsc', ['--version'], { reject: false, stdin: 'ignore' }), execa('runsc', ['flags'], { reject: false, stdin: 'ignore', all: true })]);
    return {
      version: /runsc version (\S+)/.exec(String(version.stdout))?.[1] ?? 'unknown',
      platform: /-platform string\s*\n[^\n]*\(default "([a-z]+)"\)/.exec(String(flags.all))?.[1] ?? 'unknown',
    };
  })();
  return detected;
}
