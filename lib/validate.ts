/** Argument checks: programmer mistakes throw TypeError/RangeError naming the option. */

export function assertPositiveInt(name: string, value: unknown): asserts value is number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`'${name}' must be a positive integer, got ${describe(value)}`)
  }
  if (value < 1) throw new RangeError(`'${name}' must be a positive integer, got ${value}`)
}

export function assertNonNegativeInt(name: string, value: unknown): asserts value is number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`'${name}' must be a non-negative integer, got ${describe(value)}`)
  }
  if (value < 0) throw new RangeError(`'${name}' must be a non-negative integer, got ${value}`)
}

export function assertNumberInRange(
  name: string,
  value: unknown,
  min: number,
  max: number,
): asserts value is number {
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(`'${name}' must be a number, got ${describe(value)}`)
  }
  if (value < min || value > max) {
    throw new RangeError(`'${name}' must be between ${min} and ${max}, got ${value}`)
  }
}

export function assertOneOf<T extends string>(
  name: string,
  value: unknown,
  allowed: readonly T[],
): asserts value is T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw new TypeError(
      `'${name}' must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${describe(value)}`,
    )
  }
}

export function assertFunction(
  name: string,
  value: unknown,
): asserts value is (...args: never[]) => unknown {
  if (typeof value !== "function")
    throw new TypeError(`'${name}' must be a function, got ${describe(value)}`)
}

/** Accepts exactly one endpoint (a string), for binding roles. */
export function singleEndpoint(name: string, value: unknown): string {
  if (typeof value !== "string") {
    throw new TypeError(
      `'${name}' must be one ZeroMQ endpoint such as "tcp://127.0.0.1:5555", got ${describe(value)}`,
    )
  }
  return endpointList(name, value)[0] as string
}

/** Accepts one endpoint or a non-empty list; returns the list. */
export function endpointList(name: string, value: unknown): string[] {
  const list = Array.isArray(value) ? (value as unknown[]) : [value]
  if (list.length === 0) throw new TypeError(`'${name}' must name at least one endpoint`)
  for (const ep of list) {
    if (typeof ep !== "string" || !/^(tcp|ipc|inproc):\/\/.+/.test(ep)) {
      throw new TypeError(
        `'${name}' must be a ZeroMQ endpoint such as "tcp://127.0.0.1:5555", got ${describe(ep)}`,
      )
    }
  }
  return list as string[]
}

export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value)
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  if (typeof value === "object") return "an object"
  if (typeof value === "function") return "a function"
  if (typeof value === "symbol") return value.toString()
  return `${value as number | boolean | bigint | undefined}`
}

/** Drops keys whose value is `undefined`, so that spreading over defaults keeps the defaults. */
export function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o))
    if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}

/**
 * Refuses a key of `options` that is not one of `known` (a typo would otherwise be silently
 * ignored, leaving the default in force), with the closest known name as a suggestion:
 * `'maxAttemps' is not an option of Sender; did you mean 'maxAttempts'?`.
 *
 * @param what - whose options they are, for the message (`"Sender"`, `"replyCache"`)
 * @param known - every option name; a `Record<keyof Options, true>` keeps it in step with the type
 * @throws TypeError naming the unknown key
 */
export function assertKnownOptions(
  what: string,
  options: object,
  known: Readonly<Record<string, unknown>>,
): void {
  for (const key in options) {
    if (Object.hasOwn(known, key)) continue
    const hint = closest(key, Object.keys(known))
    throw new TypeError(
      `'${key}' is not an option of ${what}` +
        (hint === undefined
          ? `; the options are ${Object.keys(known)
              .map((k) => `'${k}'`)
              .join(", ")}`
          : `; did you mean '${hint}'?`),
    )
  }
}

/**
 * The name of `names` closest to `name` (case-insensitive Levenshtein distance), when it is
 * close enough to be a likely typo: at most a third of the name's length, and at least 1.
 */
export function closest(name: string, names: readonly string[]): string | undefined {
  const lower = name.toLowerCase()
  let best: string | undefined
  let bestDistance = Math.max(1, Math.floor(name.length / 3))
  for (const candidate of names) {
    const d = levenshtein(lower, candidate.toLowerCase())
    if (d <= bestDistance && (best === undefined || d < bestDistance)) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** Edits (insertions, deletions, substitutions) that turn `a` into `b`. */
export function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(
        (previous[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (previous[j - 1] as number) + cost,
      )
    }
    previous = row
  }
  return previous[b.length] as number
}
