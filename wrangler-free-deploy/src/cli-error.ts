/** A failure the CLI reports as one `fn: <message>` line on stderr. */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Bad command-line usage: exit code 2, like most Unix tools. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(`${message} (see fn --help)`, 2);
  }
}
