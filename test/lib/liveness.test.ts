import { describe, expect, it } from "vitest"
import { LIVENESS_DEFAULTS, Liveness } from "../../lib/liveness.js"

/** A clock the test moves by hand. */
function manualClock(start = 1_000) {
  const clock = { t: start, now: () => clock.t }
  return clock
}

describe("Liveness", () => {
  it("defaults to the Guide's 1000 ms heartbeat and liveness 3", () => {
    expect(LIVENESS_DEFAULTS).toEqual({ heartbeatInterval: 1000, liveness: 3 })
    const l = new Liveness({}, manualClock())
    expect(l.heartbeatInterval).toBe(1000)
    expect(l.liveness).toBe(3)
    expect(l.expiry).toBe(3000)
  })

  it("a peer silent for liveness × heartbeatInterval is dead; any traffic revives it", () => {
    const clock = manualClock()
    const l = new Liveness({ heartbeatInterval: 100, liveness: 3 }, clock)
    expect(l.silence()).toBe(0)
    expect(l.missed()).toBe(0)
    clock.t += 250
    expect(l.missed()).toBe(2)
    expect(l.expired()).toBe(false)
    clock.t += 49
    expect(l.expired()).toBe(false)
    clock.t += 1
    expect(l.silence()).toBe(300)
    expect(l.missed()).toBe(3)
    expect(l.expired()).toBe(true)
    l.seen()
    expect(l.expired()).toBe(false)
    expect(l.silence()).toBe(0)
  })

  it("a heartbeat is due after a quiet interval of sending", () => {
    const clock = manualClock()
    const l = new Liveness({ heartbeatInterval: 100 }, clock)
    expect(l.heartbeatDue()).toBe(false)
    clock.t += 99
    expect(l.heartbeatDue()).toBe(false)
    clock.t += 1
    expect(l.heartbeatDue()).toBe(true)
    l.sent()
    expect(l.heartbeatDue()).toBe(false)
    // Receiving does not reset the send side, sending does not reset the receive side.
    clock.t += 100
    l.seen()
    expect(l.heartbeatDue()).toBe(true)
    expect(l.silence()).toBe(0)
  })

  it("validates its options, naming them", () => {
    expect(() => new Liveness({ heartbeatInterval: 0 })).toThrow(RangeError)
    expect(() => new Liveness({ heartbeatInterval: 0 })).toThrow(/'heartbeatInterval'/)
    expect(() => new Liveness({ liveness: 1.5 })).toThrow(TypeError)
    expect(() => new Liveness({ liveness: 1.5 })).toThrow(/'liveness'/)
  })

  it("uses performance.now() without an injected clock", () => {
    const l = new Liveness({ heartbeatInterval: 1_000_000 })
    expect(l.expired()).toBe(false)
    expect(l.silence()).toBeGreaterThanOrEqual(0)
  })
})
