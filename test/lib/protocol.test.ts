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
  PACK_BYTES,
  PPP,
  PPX,
  decodeEnvelope,
  readAcks,
  decodeNack,
  decodeReady,
  decodeRemoteError,
  decodeReplyStatus,
  decodeRequestHeader,
  decodeWelcome,
  packLimit,
  encodeEnvelope,
  encodeNack,
  encodeReady,
  encodeRemoteError,
  encodeReplyStatus,
  encodeRequestHeader,
  encodeWelcome,
  isCommand,
  packBodies,
  packEnvelopes,
  unpackBodies,
  unpackEnvelopes,
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
    const bytes = [
      PPX.WELCOME,
      PPX.TASKS,
      PPX.ACKS,
      PPX.NACK,
      PPX.EXTEND,
      PPX.GOODBYE,
      PPX.STARTED,
      PPX.TASK,
      PPX.ACK,
    ]
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
    expect(decodeReady(frame)).toEqual({ version: PPX.VERSION, ...hello })
  })

  it("may announce the worker's maxMessageSize; an absent one is left out, not sent as nil", () => {
    const hello = { credit: 8, heartbeatInterval: 1000, liveness: 3, maxMessageSize: 8192 }
    expect(decodeReady(encodeReady(hello))).toEqual({ version: PPX.VERSION, ...hello })
    const without = encodeReady({ ...hello, maxMessageSize: undefined })
    expect(decodeReady(without)).toEqual({
      version: PPX.VERSION,
      credit: 8,
      heartbeatInterval: 1000,
      liveness: 3,
    })
    expect(without.includes(Buffer.from("maxMessageSize"))).toBe(false)
  })

  it("may say the worker can report starts (started: true); any other value reads as absent", () => {
    const hello = { credit: 8, heartbeatInterval: 1000, liveness: 3 }
    expect(decodeReady(encodeReady({ ...hello, started: true }))).toEqual({
      version: PPX.VERSION,
      ...hello,
      started: true,
    })
    const ppx = Buffer.from([0x01, 0x50, 0x50, 0x58, 0x01])
    for (const started of [false, 1, "yes"])
      expect(decodeReady(Buffer.concat([ppx, packMeta({ ...hello, started })]))).toEqual({
        version: 1,
        ...hello,
      })
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
      ...[0, -1, 1.5, "8192", null].map((maxMessageSize) =>
        Buffer.concat([
          ppx,
          packMeta({ credit: 1, heartbeatInterval: 1000, liveness: 3, maxMessageSize }),
        ]),
      ),
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
    const limited = { ...welcome, maxMessageSize: 1 << 20 }
    expect(decodeWelcome(encodeWelcome(limited)[1])).toEqual(limited)
    const named = { ...welcome, sender: "0123456789abcdef0123456789abcdef" }
    expect(decodeWelcome(encodeWelcome(named)[1])).toEqual(named)
    const timed = { ...welcome, started: true as const }
    expect(decodeWelcome(encodeWelcome(timed)[1])).toEqual(timed)
  })

  it("packLimit: PACK_BYTES, or the peer's maxMessageSize when that is smaller", () => {
    expect(packLimit(undefined)).toBe(PACK_BYTES)
    expect(packLimit(8192)).toBe(8192)
    expect(packLimit(PACK_BYTES * 16)).toBe(PACK_BYTES)
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
      packMeta({ version: 1, heartbeatInterval: 500, liveness: 4, maxMessageSize: 0 }),
      packMeta({ version: 1, heartbeatInterval: 500, liveness: 4, sender: "" }),
      packMeta({ version: 1, heartbeatInterval: 500, liveness: 4, sender: "a b" }),
      packMeta({ version: 1, heartbeatInterval: 500, liveness: 4, sender: "x".repeat(65) }),
      packMeta({ version: 1, heartbeatInterval: 500, liveness: 4, sender: 7 }),
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

describe("packed envelopes", () => {
  const a = encodeEnvelope("0000000000000001", 1)
  const b = encodeEnvelope("0000000000000002", 3)

  it("without a count, unpacks any number of records (at least one)", () => {
    expect(unpackEnvelopes(packEnvelopes([a]))).toEqual([a])
    expect(unpackEnvelopes(packEnvelopes([a, b, a]))).toEqual([a, b, a])
    const many = Array.from({ length: 300 }, (_, i) => encodeEnvelope(i.toString(16), i))
    expect(unpackEnvelopes(packEnvelopes(many))).toEqual(many)
    expect(unpackEnvelopes(Buffer.from([1, 0x7f]))).toEqual([Buffer.from([0x7f])])
  })

  it("with a count, requires exactly that many", () => {
    const frame = packEnvelopes([a, b])
    expect(unpackEnvelopes(frame, 2)).toEqual([a, b])
    expect(unpackEnvelopes(frame, 1)).toBeNull()
    expect(unpackEnvelopes(frame, 3)).toBeNull()
    expect(unpackEnvelopes(frame, 0)).toBeNull()
  })

  it("returns null for an empty, missing or malformed frame, with or without a count", () => {
    const frame = packEnvelopes([a, b])
    const bad = [
      undefined,
      Buffer.alloc(0), // no record
      Buffer.from([0]), // a zero-length record
      Buffer.concat([frame, Buffer.from([0])]),
      frame.subarray(0, frame.length - 1), // the last record cut short
      Buffer.concat([frame, Buffer.from([5, 1, 2])]), // a length past the end
    ]
    for (const f of bad) {
      expect(unpackEnvelopes(f)).toBeNull()
      expect(unpackEnvelopes(f, 2)).toBeNull()
      expect(unpackEnvelopes(f, 3)).toBeNull()
    }
  })

  it("round-trips any non-empty list of envelopes (property)", () => {
    const envelope = fc.uint8Array({ minLength: 1, maxLength: 255 }).map((u) => Buffer.from(u))
    fc.assert(
      fc.property(fc.array(envelope, { minLength: 1, maxLength: 20 }), (envelopes) => {
        expect(unpackEnvelopes(packEnvelopes(envelopes))).toEqual(envelopes)
        expect(unpackEnvelopes(packEnvelopes(envelopes), envelopes.length)).toEqual(envelopes)
      }),
    )
  })
})

describe("readAcks (ACKS without a Buffer per record)", () => {
  /** What readAcks reports, built from unpackEnvelopes, unpackBodies and decodeEnvelope. */
  function expected(envelopes: Buffer, replies: Buffer): unknown[] | false {
    const env = unpackEnvelopes(envelopes)
    const rep = env && unpackBodies(replies, env.length)
    if (!env || !rep) return false
    return env.map((e, i) => {
      const d = decodeEnvelope(e)
      return [d?.id ?? null, d?.attempt ?? 0, [...(rep[i] as Buffer)]]
    })
  }
  function read(envelopes: Buffer, replies: Buffer): unknown[] | false {
    const out: unknown[] = []
    const ok = readAcks(envelopes, replies, (id, attempt, start, end) =>
      out.push([id, attempt, [...replies.subarray(start, end)]]),
    )
    return ok ? out : out.length === 0 && false
  }

  it("gives each envelope's id and attempt and the bounds of its reply", () => {
    const envelopes = packEnvelopes([
      encodeEnvelope("a1", 3),
      Buffer.from("x"),
      encodeEnvelope("b", 1),
    ])
    const replies = packBodies([Buffer.from("r"), Buffer.alloc(0), Buffer.from([1, 2])])
    expect(read(envelopes, replies)).toEqual([
      ["a1", 3, [0x72]],
      [null, 0, []],
      ["b", 1, [1, 2]],
    ])
    expect(read(envelopes, packBodies([Buffer.from("r")]))).toBe(false)
    expect(read(Buffer.alloc(0), Buffer.alloc(0))).toBe(false)
  })

  it("agrees with unpackEnvelopes, unpackBodies and decodeEnvelope on any frames (property)", () => {
    const ours = fc
      .tuple(fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 20 }), fc.nat())
      .map(([id, attempt]) => encodeEnvelope(id, attempt))
    const any = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((u) => Buffer.from(u))
    const body = fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u))
    const packed = fc.tuple(
      fc.array(fc.oneof(ours, any), { minLength: 1, maxLength: 8 }),
      fc.array(body, { minLength: 1, maxLength: 8 }),
    )
    const frames = fc.oneof(
      packed.map(([e, b]) => [packEnvelopes(e), packBodies(b)] as const),
      fc.tuple(
        fc.uint8Array({ maxLength: 60 }).map((u) => Buffer.from(u)),
        fc.uint8Array({ maxLength: 60 }).map((u) => Buffer.from(u)),
      ),
    )
    fc.assert(
      fc.property(frames, ([envelopes, replies]) => {
        expect(read(envelopes, replies)).toEqual(expected(envelopes, replies))
      }),
    )
  })
})

describe("packed bodies (TASKS bodies, ACKS replies)", () => {
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(n)
    return b
  }

  it("each body is a 4-byte big-endian length and its bytes", () => {
    const frame = packBodies([Buffer.from("ab"), Buffer.alloc(0), Buffer.from([0xff])])
    expect([...frame]).toEqual([0, 0, 0, 2, 0x61, 0x62, 0, 0, 0, 0, 0, 0, 0, 1, 0xff])
    expect(packBodies([])).toHaveLength(0)
    expect(packBodies([Buffer.alloc(300)]).subarray(0, 4)).toEqual(u32(300))
  })

  it("round-trips, empty bodies included", () => {
    const bodies = [
      Buffer.from("first"),
      Buffer.alloc(0),
      Buffer.from([0, 0, 0, 0]),
      Buffer.alloc(0),
    ]
    expect(unpackBodies(packBodies(bodies), 4)).toEqual(bodies)
    expect(unpackBodies(packBodies([Buffer.alloc(0)]), 1)).toEqual([Buffer.alloc(0)])
    const big = Buffer.alloc(PACK_BYTES + 1, 0x61)
    const unpacked = unpackBodies(packBodies([big]), 1)
    expect(unpacked).toHaveLength(1)
    expect(unpacked?.[0]?.equals(big)).toBe(true)
  })

  it("round-trips any list of bodies (property)", () => {
    const body = fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u))
    fc.assert(
      fc.property(fc.array(body, { minLength: 1, maxLength: 20 }), (bodies) => {
        expect(unpackBodies(packBodies(bodies), bodies.length)).toEqual(bodies)
      }),
    )
  })

  it("requires exactly `count` bodies", () => {
    const frame = packBodies([Buffer.from("a"), Buffer.from("b")])
    expect(unpackBodies(frame, 2)).toHaveLength(2)
    expect(unpackBodies(frame, 1)).toBeNull()
    expect(unpackBodies(frame, 3)).toBeNull()
    expect(unpackBodies(frame, 0)).toBeNull()
    expect(unpackBodies(Buffer.alloc(0), 1)).toBeNull()
    expect(unpackBodies(undefined, 1)).toBeNull()
  })

  it("returns null for truncated or oversized length prefixes and for trailing bytes", () => {
    const frame = packBodies([Buffer.from("abc"), Buffer.from("de")])
    const bad = [
      frame.subarray(0, 2), // a length prefix cut short
      frame.subarray(0, 9), // the second length prefix cut short
      frame.subarray(0, frame.length - 1), // the last body cut short
      Buffer.concat([u32(4), Buffer.from("abc"), u32(2), Buffer.from("de")]), // a length too big
      Buffer.concat([u32(3), Buffer.from("abc"), u32(3), Buffer.from("de")]),
      Buffer.concat([u32(0xffff_ffff), Buffer.from("abcde")]),
      Buffer.concat([frame, Buffer.from([0])]), // trailing bytes
      Buffer.concat([frame, Buffer.from([0, 0, 0])]),
      Buffer.concat([frame, u32(0)]), // a third (empty) body
      Buffer.concat([frame, Buffer.from("garbage")]),
    ]
    for (const f of bad) expect(unpackBodies(f, 2), f.toString("hex")).toBeNull()
    expect(unpackBodies(frame, 2)).toEqual([Buffer.from("abc"), Buffer.from("de")])
  })

  it("a strict prefix or an extension of a packed frame never unpacks to the same count (property)", () => {
    const body = fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u))
    fc.assert(
      fc.property(
        fc.array(body, { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.uint8Array({ minLength: 1, maxLength: 8 }),
        (bodies, cut, tail) => {
          const frame = packBodies(bodies)
          expect(unpackBodies(frame.subarray(0, cut % frame.length), bodies.length)).toBeNull()
          expect(unpackBodies(Buffer.concat([frame, tail]), bodies.length)).toBeNull()
        },
      ),
    )
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
