/**
 * What the worker uses of lib/codec.ts besides `decode`/`encode`. `decodeRange`: a record of a
 * packed frame decodes as its view does, with every codec, and the built-in codecs hand over a
 * view of the frame itself. `encodeReply`: the bytes `encode` writes, shared for the usual
 * "done" replies.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  decodeRange,
  encodePayload,
  encodeReply,
  msgpackCodec,
  rawCodec,
  type Codec,
} from "../../lib/codec.js"

/** What `f()` returns, or the error it throws (its class, code and message). */
function outcome(f: () => unknown): unknown {
  try {
    return { value: f() }
  } catch (err) {
    const e = err as Error & { code?: string }
    return { error: [e.constructor.name, e.code, e.message] }
  }
}

/** A codec of our own, which must get the record as a Buffer of its own. */
const custom: Codec = {
  name: "custom",
  encode: (value) => Buffer.from(JSON.stringify(value)),
  decode: (frame) => ({ isBuffer: Buffer.isBuffer(frame), text: frame.toString("latin1") }),
}

describe("decodeRange", () => {
  it("decodes frame[start, end) as codec.decode(frame.subarray(start, end)) does (property)", () => {
    const value = fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.jsonValue(),
      fc.constantFrom(true, false, null),
    )
    const body = fc.oneof(
      value.map((v) => msgpackCodec.encode(v)),
      fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)), // anything, garbage included
    )
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 8 }),
        body,
        fc.uint8Array({ maxLength: 8 }),
        (before, b, after) => {
          const frame = Buffer.concat([before, b, after])
          const start = before.length
          const end = start + b.length
          for (const codec of [msgpackCodec, rawCodec, custom]) {
            const expected = outcome(() => codec.decode(frame.subarray(start, end)))
            expect(outcome(() => decodeRange(codec, frame, start, end))).toEqual(expected)
          }
        },
      ),
    )
  })

  it("hands over a view of the frame for a raw body and for a msgpack bin of any header size", () => {
    for (const size of [0, 255, 256, 65_535, 65_536]) {
      const bytes = Buffer.alloc(size, 7)
      const frame = Buffer.concat([
        Buffer.from([1, 2]),
        msgpackCodec.encode(bytes),
        Buffer.from([3]),
      ])
      const decoded = decodeRange(msgpackCodec, frame, 2, frame.length - 1) as Buffer
      expect(decoded.equals(bytes)).toBe(true)
      expect(decoded.buffer).toBe(frame.buffer)
    }
    const frame = Buffer.from("xxhello")
    const raw = decodeRange(rawCodec, frame, 2, 7) as Buffer
    expect(raw.toString()).toBe("hello")
    expect(raw.buffer).toBe(frame.buffer)
  })

  it("refuses an empty msgpack record with PIRATE_DECODE, as the codec does", () => {
    expect(() => decodeRange(msgpackCodec, Buffer.from([1, 2]), 1, 1)).toThrow(
      expect.objectContaining({ code: "PIRATE_DECODE" }) as Error,
    )
  })
})

describe("encodeReply", () => {
  it("writes the bytes codec.encode writes, or fails as encodePayload does (property)", () => {
    const value = fc.oneof(
      fc.constantFrom(undefined, null, true, false, new Uint8Array(0), Buffer.alloc(0), "", 0),
      fc.uint8Array({ maxLength: 40 }),
      fc.jsonValue(),
    )
    fc.assert(
      fc.property(value, (v) => {
        for (const codec of [msgpackCodec, rawCodec, custom]) {
          const expected = outcome(() => encodePayload(codec, v))
          expect(outcome(() => encodeReply(codec, v))).toEqual(expected)
        }
      }),
    )
  })

  it("shares one Buffer per usual reply with the default codec, made once", () => {
    for (const v of [undefined, null, true, false, Buffer.alloc(0), new Uint8Array(0)]) {
      expect(encodeReply(msgpackCodec, v)).toBe(encodeReply(msgpackCodec, v))
      expect(msgpackCodec.decode(encodeReply(msgpackCodec, v))).toEqual(
        v instanceof Uint8Array ? Buffer.alloc(0) : v,
      )
    }
    expect(encodeReply(msgpackCodec, Buffer.from("a"))).not.toBe(
      encodeReply(msgpackCodec, Buffer.from("a")),
    )
  })
})
