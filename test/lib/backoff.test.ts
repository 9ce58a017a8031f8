import { describe, expect, it } from "vitest"
import { BACKOFF_DEFAULTS, Backoff, backoffDelay, validateBackoff } from "../../lib/backoff.js"

const noJitter = () => 0
const fullJitter = () => 1

describe("backoffDelay", () => {
  it("follows the Guide's defaults: 1000 ms doubling up to 32000 ms", () => {
    expect(BACKOFF_DEFAULTS).toEqual({ initial: 1000, max: 32000, factor: 2, jitter: 0.2 })
    const delays = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, {}, noJitter))
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000])
  })

  it("removes up to `jitter` of the delay at random", () => {
    expect(backoffDelay(1, {}, fullJitter)).toBe(800)
    expect(backoffDelay(1, {}, () => 0.5)).toBe(900)
    expect(backoffDelay(6, { jitter: 1 }, fullJitter)).toBe(0)
    expect(backoffDelay(3, { jitter: 0 }, fullJitter)).toBe(4000)
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(4, {}, Math.random)
      expect(d).toBeGreaterThanOrEqual(6400)
      expect(d).toBeLessThanOrEqual(8000)
    }
  })

  it("honours initial, max and factor; attempts below 1 give the first delay", () => {
    const o = { initial: 100, max: 1000, factor: 3, jitter: 0 }
    expect([0, 1, 2, 3, 4].map((n) => backoffDelay(n, o))).toEqual([100, 100, 300, 900, 1000])
    expect(backoffDelay(1000, o)).toBe(1000) // no overflow to Infinity or NaN
  })
})

describe("Backoff", () => {
  it("grows with next() and starts over after reset()", () => {
    const b = new Backoff({ initial: 10, max: 50, jitter: 0 })
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([10, 20, 40, 50])
    expect(b.attempt).toBe(4)
    b.reset()
    expect(b.attempt).toBe(0)
    expect(b.next()).toBe(10)
  })

  it("uses the injected random source", () => {
    const values = [0, 0.5, 1]
    let i = 0
    const b = new Backoff({ initial: 100, factor: 1, jitter: 0.5 }, () => values[i++ % 3]!)
    expect([b.next(), b.next(), b.next()]).toEqual([100, 75, 50])
  })

  it("validates its options, naming them", () => {
    expect(() => new Backoff({ initial: -1 })).toThrow(RangeError)
    expect(() => new Backoff({ initial: -1 })).toThrow(/'backoff.initial'/)
    expect(() => new Backoff({ max: 0 })).toThrow(/'backoff.max'/)
    expect(() => new Backoff({ factor: 0.5 })).toThrow(/'backoff.factor'/)
    expect(() => new Backoff({ jitter: 2 })).toThrow(/'backoff.jitter'/)
    // @ts-expect-error wrong type on purpose
    expect(() => new Backoff({ initial: "1" })).toThrow(TypeError)
    expect(() => new Backoff({ initial: 500, max: 100 })).toThrow(/must not be less than/)
    expect(validateBackoff("retry", { initial: 0 })).toEqual({ ...BACKOFF_DEFAULTS, initial: 0 })
  })
})
