/** PPX pair additions (docs/protocol.md): READY's `pair`, WELCOME's `pair`, PAIR and VOTE. */
import { describe, expect, it } from "vitest"
import { packMeta } from "../../lib/codec.js"
import {
  FRAME_PAIR,
  FRAME_VOTE,
  PPX,
  decodePair,
  decodeReady,
  decodeWelcome,
  encodePair,
  encodeReady,
  encodeWelcome,
} from "../../lib/protocol.js"
import type { PairStateName } from "../../lib/pair/pair-state.js"

const protocolError: unknown = expect.objectContaining({ code: "PIRATE_PROTOCOL" })
const STATES: PairStateName[] = ["primary", "backup", "active", "passive"]
const hello = { credit: 1, heartbeatInterval: 1000, liveness: 3 }
const welcome = { version: 2, heartbeatInterval: 1000, liveness: 3 }

describe("PAIR and VOTE", () => {
  it("are the commands 0x1a and 0x1b", () => {
    expect(PPX.PAIR).toBe(0x1a)
    expect(PPX.VOTE).toBe(0x1b)
    expect(FRAME_VOTE).toEqual(Buffer.from([0x1b]))
    expect(FRAME_PAIR).toEqual(Buffer.from([0x1a]))
  })

  it("PAIR carries each of the four states and reads back", () => {
    for (const state of STATES) {
      const frames = encodePair(state)
      expect(frames).toHaveLength(2)
      expect(frames[0]).toEqual(Buffer.from([0x1a]))
      expect(decodePair(frames[1])).toBe(state)
    }
  })

  it("PAIR is a msgpack map {state}: the bytes, and any map encoding reads", () => {
    // map16 of 1 (what msgpackr writes), "state", "active"
    expect(encodePair("active")[1]?.toString("hex")).toBe("de0001a57374617465a6616374697665")
    // fixmap of 1, as another implementation may write it
    expect(decodePair(Buffer.from("81a57374617465a6616374697665", "hex"))).toBe("active")
  })

  it("PAIR ignores keys it does not know", () => {
    expect(decodePair(packMeta({ state: "passive", later: 1 }))).toBe("passive")
  })

  it("a malformed PAIR is a protocol error", () => {
    const bad: (Buffer | undefined)[] = [
      undefined,
      Buffer.alloc(0),
      Buffer.from([0xc1]),
      packMeta("active"),
      packMeta(["active"]),
      packMeta({}),
      packMeta({ state: "leader" }),
      packMeta({ state: 1 }),
      packMeta({ state: null }),
      packMeta({ State: "active" }),
    ]
    for (const frame of bad) expect(() => decodePair(frame)).toThrow(protocolError)
  })

  it("encodePair refuses a state that is not one of the four (a programmer mistake)", () => {
    expect(() => encodePair("leader" as PairStateName)).toThrow(TypeError)
  })
})

describe("READY's pair", () => {
  it("reads true as a worker that knows pairs", () => {
    expect(decodeReady(encodeReady({ ...hello, pair: true }))?.pair).toBe(true)
  })

  it("is absent when not sent, and any value but true reads as absent", () => {
    expect(decodeReady(encodeReady(hello))).not.toHaveProperty("pair")
    for (const pair of [1, "yes", false, { a: 1 }]) {
      const frame = Buffer.concat([
        Buffer.from([0x01, 0x50, 0x50, 0x58, 0x02]),
        packMeta({ ...hello, pair }),
      ])
      expect(decodeReady(frame)).not.toHaveProperty("pair")
    }
  })

  it("an unknown READY key is ignored (a sender that does not know a key reads the rest)", () => {
    const frame = Buffer.concat([
      Buffer.from([0x01, 0x50, 0x50, 0x58, 0x02]),
      packMeta({ ...hello, someLaterKey: [1, 2] }),
    ])
    expect(decodeReady(frame)).toEqual({ version: 2, ...hello })
  })
})

describe("WELCOME's pair", () => {
  it("carries each of the four states", () => {
    for (const pair of STATES)
      expect(decodeWelcome(encodeWelcome({ ...welcome, pair })[1])).toEqual({ ...welcome, pair })
  })

  it("is absent for a sender not in a pair", () => {
    expect(decodeWelcome(encodeWelcome(welcome)[1])).not.toHaveProperty("pair")
  })

  it("an invalid pair makes the WELCOME malformed", () => {
    for (const pair of ["leader", 1, true, null, ["active"]])
      expect(() => decodeWelcome(packMeta({ ...welcome, pair }))).toThrow(protocolError)
  })
})
