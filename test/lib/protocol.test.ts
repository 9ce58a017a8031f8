import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { packMeta } from "../../lib/codec.js"
import {
  FRAME_HEARTBEAT,
  FRAME_NACK,
  FRAME_READY,
  LPX_ERROR,
  LPX_OK,
  MAX_ID_LENGTH,
  PPP,
  PPX,
  decodeEnvelope,
  decodeNack,
  decodeReady,
  decodeRemoteError,
  decodeReplyStatus,
  decodeRequestHeader,
  decodeWelcome,
  encodeEnvelope,
  encodeNack,
  encodeReady,
  encodeRemoteError,
  encodeReplyStatus,
  encodeRequestHeader,
  encodeWelcome,
  isCommand,
} from "../../lib/protocol.js"

const protocolError: unknown = expect.objectContaining({ code: "PIRATE_PROTOCOL" })

describe("PPP commands", () => {
  it("READY and HEARTBEAT are the single bytes of rfc 6/PPP", () => {
    expect(PPP).toEqual({ READY: 0x01, HEARTBEAT: 0x02 })
    expect([...FRAME_READY]).toEqual([0x01])
    expect([...FRAME_HEARTBEAT]).toEqual([0x02])
    expect(isCommand(FRAME_HEARTBEAT, PPP.HEARTBEAT)).toBe(true)
    expect(isCommand(FRAME_HEARTBEAT, PPP.READY)).toBe(false)
    expect(isCommand(Buffer.from([0x02, 0x00]), PPP.HEARTBEAT)).toBe(false)
    expect(isCommand(Buffer.alloc(0), PPP.HEARTBEAT)).toBe(false)
    expect(isCommand(undefined, PPP.HEARTBEAT)).toBe(false)
  })

  it("PPX command bytes do not collide with PPP's", () => {
    const bytes = [PPX.WELCOME, PPX.TASKS, PPX.ACKS, PPX.NACK, PPX.EXTEND, PPX.GOODBYE]
    expect(new Set([...bytes, PPP.READY, PPP.HEARTBEAT]).size).toBe(bytes.length + 2)
  })
})

describe("READY", () => {
  it("a plain READY is the PPP byte and decodes to null", () => {
    expect(encodeReady()).toBe(FRAME_READY)
    expect(decodeReady(encodeReady())).toBeNull()
  })

  it("an extension READY carries credit, heartbeatInterval and liveness", () => {
    const hello = { credit: 64, heartbeatInterval: 1000, liveness: 3 }
    const frame = encodeReady(hello)
    expect(frame[0]).toBe(PPP.READY)
    expect(frame.subarray(1, 4).toString()).toBe("PPX")
    expect(frame[4]).toBe(PPX.VERSION)
    expect(decodeReady(frame)).toEqual(hello)
  })

  it("rejects damaged READY frames with PIRATE_PROTOCOL", () => {
    const ppx = Buffer.from([0x01, 0x50, 0x50, 0x58, 0x01])
    const bad = [
      Buffer.from([0x01, 0x00]), // unknown trailing bytes
      Buffer.from([0x01, 0x50, 0x50, 0x58]), // magic without version
      Buffer.from([0x01, 0x51, 0x50, 0x58, 0x01, 0x80]), // wrong magic
      Buffer.concat([ppx, Buffer.from([0x92])]), // truncated msgpack
      Buffer.concat([ppx, packMeta("not a map")]),
      Buffer.concat([ppx, packMeta({ credit: 0, heartbeatInterval: 1000, liveness: 3 })]),
      Buffer.concat([ppx, packMeta({ credit: 1, heartbeatInterval: 1.5, liveness: 3 })]),
      Buffer.concat([ppx, packMeta({ credit: 1, heartbeatInterval: 1000 })]),
      Buffer.concat([ppx, packMeta({ credit: 70_000, heartbeatInterval: 1000, liveness: 3 })]),
    ]
    for (const frame of bad) expect(() => decodeReady(frame)).toThrow(protocolError)
  })
})

describe("WELCOME", () => {
  it("round-trips", () => {
    const welcome = { version: 1, heartbeatInterval: 500, liveness: 4 }
    const frames = encodeWelcome(welcome)
    expect(frames).toHaveLength(2)
    expect(isCommand(frames[0], PPX.WELCOME)).toBe(true)
    expect(decodeWelcome(frames[1])).toEqual(welcome)
  })

  it("rejects garbage with PIRATE_PROTOCOL", () => {
    const bad = [
      undefined,
      Buffer.alloc(0),
      Buffer.from([0xff, 0xff]),
      packMeta(null),
      packMeta([1, 2, 3]),
      packMeta({ version: 0, heartbeatInterval: 500, liveness: 4 }),
      packMeta({ version: 1, heartbeatInterval: "500", liveness: 4 }),
      packMeta({ version: 1, heartbeatInterval: 500 }),
    ]
    for (const frame of bad) expect(() => decodeWelcome(frame)).toThrow(protocolError)
  })
})

describe("NACK", () => {
  it("round-trips error, reject and delay", () => {
    const envelope = encodeEnvelope("0000000000000001", 2)
    const frames = encodeNack(envelope, { error: "disk full", reject: true, delay: 250 })
    expect(frames[0]).toBe(FRAME_NACK)
    expect(frames[1]).toBe(envelope)
    expect(decodeNack(frames[2])).toEqual({ error: "disk full", reject: true, delay: 250 })
    expect(decodeNack(encodeNack(envelope, { error: "x" })[2])).toEqual({ error: "x" })
  })

  it("fills in what is missing and ignores out-of-range fields", () => {
    expect(decodeNack(packMeta({}))).toEqual({ error: "nacked" })
    expect(decodeNack(packMeta({ error: 5, reject: "yes", delay: -1 }))).toEqual({
      error: "nacked",
    })
  })

  it("rejects garbage with PIRATE_PROTOCOL", () => {
    for (const frame of [undefined, Buffer.from([0x92]), packMeta("text"), packMeta(null)]) {
      expect(() => decodeNack(frame)).toThrow(protocolError)
    }
  })
})

describe("envelope", () => {
  it("round-trips id and attempt", () => {
    const frame = encodeEnvelope("0123456789abcdef", 7)
    expect(frame[0]).toBe(0x50)
    expect(frame[1]).toBe(0x01)
    expect(decodeEnvelope(frame)).toEqual({ id: "0123456789abcdef", attempt: 7 })
    expect(decodeEnvelope(encodeEnvelope("x", 2 ** 32 - 1))).toEqual({
      id: "x",
      attempt: 2 ** 32 - 1,
    })
  })

  it("round-trips any id up to MAX_ID_LENGTH (property)", () => {
    const id = fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: MAX_ID_LENGTH })
    fc.assert(
      fc.property(id, fc.nat({ max: 2 ** 32 - 1 }), (id, attempt) => {
        expect(decodeEnvelope(encodeEnvelope(id, attempt))).toEqual({ id, attempt })
      }),
    )
  })

  it("returns null for anything that is not one of ours", () => {
    const good = encodeEnvelope("abc", 1)
    const bad = [
      undefined,
      Buffer.alloc(0),
      good.subarray(0, 6), // no id
      Buffer.concat([Buffer.from([0x51]), good.subarray(1)]), // wrong tag
      Buffer.concat([Buffer.from([0x50, 0x02]), good.subarray(2)]), // wrong version
      encodeEnvelope("x".repeat(MAX_ID_LENGTH + 1), 1), // too long
      Buffer.from("a client address from a foreign queue"),
    ]
    for (const frame of bad) expect(decodeEnvelope(frame)).toBeNull()
  })
})

describe("Lazy Pirate framing (LPX/1)", () => {
  it("a request header carries the request id", () => {
    const header = encodeRequestHeader("k3j2.1f")
    expect([...header.subarray(0, 4)]).toEqual([0x4c, 0x50, 0x58, 0x01])
    expect(decodeRequestHeader(header)).toBe("k3j2.1f")
  })

  it("rejects request headers that are not LPX/1", () => {
    const bad = [
      undefined,
      Buffer.alloc(0),
      encodeRequestHeader(""), // no id
      Buffer.from("LPX\x02abc"), // other version
      Buffer.from("hello"), // a plain payload
      encodeRequestHeader("x".repeat(MAX_ID_LENGTH + 1)),
    ]
    for (const frame of bad) expect(decodeRequestHeader(frame)).toBeNull()
  })

  it("reply status frames: OK and ERROR, null for anything else", () => {
    expect(decodeReplyStatus(encodeReplyStatus(LPX_OK))).toBe(LPX_OK)
    expect(decodeReplyStatus(encodeReplyStatus(LPX_ERROR))).toBe(LPX_ERROR)
    expect(encodeReplyStatus(LPX_OK)).toHaveLength(5)
    const bad = [
      undefined,
      Buffer.alloc(0),
      Buffer.from("LPX\x01"),
      Buffer.from("LPX\x01\x00\x00"),
      Buffer.from("XPL\x01\x00"),
    ]
    for (const frame of bad) expect(decodeReplyStatus(frame)).toBeNull()
  })

  it("remote errors carry the message and the name", () => {
    expect(decodeRemoteError(encodeRemoteError(new RangeError("too big")))).toEqual({
      message: "too big",
      name: "RangeError",
    })
    expect(decodeRemoteError(encodeRemoteError("a string was thrown"))).toEqual({
      message: "a string was thrown",
      name: "Error",
    })
  })

  it("an unreadable remote error body still decodes to an error", () => {
    for (const frame of [undefined, Buffer.from([0x92]), packMeta(42)]) {
      expect(decodeRemoteError(frame).message).toMatch(/remote error/)
    }
    expect(decodeRemoteError(packMeta({ name: "E" }))).toEqual({
      message: "remote error",
      name: "E",
    })
  })
})
