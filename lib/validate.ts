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
