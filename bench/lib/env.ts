/** Settings from the environment and output, shared by the benchmark scripts. */

/** A positive integer from environment variable `name`; `fallback` when unset or empty. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new RangeError(`${name} must be a positive integer, got ${raw}`)
  return value
}

/** Prints one JSON line on stdout. */
export function printLine(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}
