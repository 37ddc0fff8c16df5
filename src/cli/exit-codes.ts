import { TandemError } from '../errors.js';

/**
 * The CLI's exit codes (README "CLI"): their own table, not HTTP statuses. Scripts switch on
 * them: 1 is "the answer is no" (drift, an unreachable server, flags not loaded), 2 a usage
 * or configuration error, 3 a backfill stopped by a signal (resumable), 4 a failure while
 * running.
 */
export const EXIT = {
  ok: 0,
  drift: 1,
  unreachable: 1,
  notLoaded: 1,
  usage: 2,
  stopped: 3,
  failed: 4,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports with its message and a given exit code. */
export class CliError extends Error {
  constructor(
    readonly exit: ExitCode,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The exit code of an error that ended a command. */
export function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof CliError) return error.exit;
  if (error instanceof TandemError && (error.code === 'config_invalid' || error.code === 'policy_invalid')) return EXIT.usage;
  return EXIT.failed;
}
