import {
  assertKnownOptions,
  assertNonNegativeInt,
  assertNumberInRange,
  assertPositiveInt,
  describe,
  stripUndefined,
} from "./validate.js"

/** Exponential backoff settings. All durations in ms. */
export interface BackoffOptions {
  /** First delay (ms). @defaultValue 1000 */
  initial?: number
  /** Largest delay (ms). @defaultValue 32000 */
  max?: number
  /** Growth factor per step. @defaultValue 2 */
  factor?: number
  /** Fraction of the delay randomised, 0 (none) to 1 (full jitter). @defaultValue 0.2 */
  jitter?: number
}

export const BACKOFF_DEFAULTS = Object.freeze({
  initial: 1000,
  max: 32000,
  factor: 2,
  jitter: 0.2,
}) satisfies Required<BackoffOptions>

/**
 * The delay before try number `attempt` (1-based): `initial × factor^(attempt-1)`, capped at `max`,
 * then up to `jitter` of it removed at random so that many peers do not retry in step.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const o = { ...BACKOFF_DEFAULTS, ...options }
  const base = Math.min(o.max, o.initial * o.factor ** Math.max(0, attempt - 1))
  return Math.round(base * (1 - o.jitter * random()))
}

export function validateBackoff(name: string, options: BackoffOptions): Required<BackoffOptions> {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(
      `'${name}' must be an object such as { initial, max, factor, jitter }, got ${describe(options)}`,
    )
  }
  assertKnownOptions(name, options, BACKOFF_DEFAULTS)
  const o = { ...BACKOFF_DEFAULTS, ...stripUndefined(options) }
  assertNonNegativeInt(`${name}.initial`, o.initial)
  assertPositiveInt(`${name}.max`, o.max)
  assertNumberInRange(`${name}.factor`, o.factor, 1, 100)
  assertNumberInRange(`${name}.jitter`, o.jitter, 0, 1)
  if (o.max < o.initial)
    throw new RangeError(
      `'${name}.max' (${o.max}) must not be less than '${name}.initial' (${o.initial})`,
    )
  return o
}

/** A stateful backoff: `next()` gives growing delays, `reset()` starts over (after a success). */
export class Backoff {
  readonly #options: Required<BackoffOptions>
  readonly #random: () => number
  #attempt = 0
  constructor(options: BackoffOptions = {}, random: () => number = Math.random) {
    this.#options = validateBackoff("backoff", options)
    this.#random = random
  }
  next(): number {
    this.#attempt++
    return backoffDelay(this.#attempt, this.#options, this.#random)
  }
  reset(): void {
    this.#attempt = 0
  }
  get attempt(): number {
    return this.#attempt
  }
}
