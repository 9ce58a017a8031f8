/** Shared helpers of the CLI commands: argument parsing with node:util, one-line errors. */
import { debuglog, parseArgs, type ParseArgsConfig } from "node:util"
import { PirateError } from "../lib/index.js"

/** The CLI's trace, enabled with `NODE_DEBUG=pirate` (as the library's). */
export const debug = debuglog("pirate")

/** An error's message for a one-line report on stderr. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return typeof err === "string" ? err : String(err)
}

/** An endpoint (or port) that could not be bound because it is in use. */
export function isAddressInUse(err: unknown): err is PirateError {
  return err instanceof PirateError && err.code === "PIRATE_ADDRESS_IN_USE"
}

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
    return parseArgs({ args: glueValues(argv, options), allowPositionals, options, strict: true })
  } catch (err) {
    throw new UsageError(
      // node's messages can run over several lines ("… To specify …"): keep the first sentence.
      (err instanceof Error ? err.message : String(err))
        .split("\n")[0]
        ?.replace(/\. To specify.*$/, ""),
    )
  }
}

/**
 * Joins `--name VALUE` into `--name=VALUE` for string options, so that a value starting with a
 * dash is taken as the value: a Z85 key such as `-x2…` (`--curve-server-key "$(cat a.pub)"`), a
 * negative number. node's parseArgs refuses it as ambiguous otherwise.
 */
function glueValues(argv: string[], options: Options): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === "--") {
      out.push(...argv.slice(i))
      break
    }
    const next = argv[i + 1]
    const long = arg.startsWith("--") && !arg.includes("=") ? arg.slice(2) : undefined
    const short =
      /^-[^-]$/.test(arg) && Object.entries(options).find(([, o]) => o.short === arg.slice(1))?.[0]
    const name = long ?? (short || undefined)
    if (
      name !== undefined &&
      options[name]?.type === "string" &&
      next?.startsWith("-") &&
      !isOption(next, options)
    ) {
      out.push(`--${name}=${next}`)
      i++
    } else out.push(arg)
  }
  return out
}

/** True when `arg` names one of `options` (`--name`, `--name=…`, `-x`). */
function isOption(arg: string, options: Options): boolean {
  if (arg.startsWith("--")) return (arg.slice(2).split("=")[0] ?? "") in options
  return arg.length === 2 && Object.values(options).some((o) => o.short === arg[1])
}

/**
 * A message that names options as the library does (`'heartbeatInterval'`) with the names the
 * command line gives them (`--heartbeat-interval`).
 */
export function cliOptionNames(message: string): string {
  return message.replace(
    /'(\w+)'/g,
    (_, name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
  )
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
