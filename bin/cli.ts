/** Shared helpers of the CLI commands: argument parsing with node:util, one-line errors. */
import { parseArgs, type ParseArgsConfig } from "node:util"

export class UsageError extends Error {
  override name = "UsageError"
}

export interface Command {
  /** One line for `pirate --help`. */
  summary: string
  /** Full help for `pirate CMD --help`. */
  help: string
  /** Runs the command; resolves with the exit status. */
  run(argv: string[]): Promise<number>
}

type Options = NonNullable<ParseArgsConfig["options"]>
type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean; strict: true }>
>

/** Parses `argv` strictly; unknown options throw `UsageError`. */
export function parse<O extends Options>(
  argv: string[],
  options: O,
  allowPositionals = true,
): Parsed<O> {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true })
  } catch (err) {
    throw new UsageError(
      // node's messages can run over several lines ("… To specify …"): keep the first sentence.
      (err instanceof Error ? err.message : String(err))
        .split("\n")[0]
        ?.replace(/\. To specify.*$/, ""),
    )
  }
}

/** Reads an integer option. */
export function intOption(
  name: string,
  value: string | undefined,
  fallback?: number,
): number | undefined {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`--${name} must be a non-negative integer, got "${value}"`)
  return n
}
