import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  msgpackCodec,
  packMeta,
  rawCodec,
  resolveCodec,
  unpackMeta,
  type Codec,
} from "../../lib/codec.js"
import { PirateError } from "../../lib/errors.js"

describe("msgpack codec", () => {
  it("round-trips the values a payload may hold", () => {
    const values: unknown[] = [
      null,
      true,
      false,
      0,
      -1,
      2 ** 40,
      -(2 ** 40),
      1.5,
      "",
      "héllo ✓",
      [],
      [1, [2, [3]]],
      {},
      { a: 1, b: { c: [true, null, "x"] } },
      Buffer.from([0, 1, 2, 255]),
    ]
    for (const value of values) {
      expect(msgpackCodec.decode(msgpackCodec.encode(value))).toEqual(value)
    }
  })

  it("round-trips any JSON value (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        fc.pre(!JSON.stringify(value).includes('"__proto__"')) // see the next test
        // JSON has no -0; msgpack keeps it, so compare as JSON does.
        const back = msgpackCodec.decode(msgpackCodec.encode(value))
        expect(JSON.stringify(back)).toBe(JSON.stringify(value))
      }),
    )
  })

  it("never lets a decoded payload set an object's prototype", () => {
    const frame = msgpackCodec.encode(JSON.parse('{"__proto__":{"polluted":true}}'))
    const back = msgpackCodec.decode(frame) as Record<string, unknown>
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
  })

  it("encodes to Buffers readable by other msgpack peers (no record extension)", () => {
    const frame = msgpackCodec.encode({ a: 1 })
    expect(Buffer.isBuffer(frame)).toBe(true)
    // A plain msgpack map (fixmap or map16) holding "a" → 1, not a msgpackr record extension.
    expect(frame[0] === 0xde || (frame[0]! & 0xf0) === 0x80).toBe(true)
    expect([...frame.subarray(-3)]).toEqual([0xa1, 0x61, 0x01])
  })

  it("decode errors are PirateErrors with code PIRATE_DECODE", () => {
    for (const bad of [[], [0x92, 0x01], [0xd9], [0xff, 0xff], [0x81]]) {
      const frame = Buffer.from(bad)
      expect(() => msgpackCodec.decode(frame)).toThrow(PirateError)
      expect(() => msgpackCodec.decode(frame)).toThrow(
        expect.objectContaining({ code: "PIRATE_DECODE" }),
      )
    }
  })

  it("is named and frozen", () => {
    expect(msgpackCodec.name).toBe("msgpack")
    expect(Object.isFrozen(msgpackCodec)).toBe(true)
  })
})

describe("raw codec", () => {
  it("passes Buffers through untouched and turns strings and Uint8Arrays into Buffers", () => {
    const buf = Buffer.from("abc")
    expect(rawCodec.encode(buf)).toBe(buf)
    expect(rawCodec.encode("héllo")).toEqual(Buffer.from("héllo"))
    const bytes = new Uint8Array([9, 8, 7, 6]).subarray(1, 3)
    expect(rawCodec.encode(bytes)).toEqual(Buffer.from([8, 7]))
    const frame = Buffer.from([1, 2, 3])
    expect(rawCodec.decode(frame)).toBe(frame)
    expect(rawCodec.decode(Buffer.alloc(0))).toEqual(Buffer.alloc(0))
  })

  it("refuses other values with a TypeError (a programmer mistake)", () => {
    for (const value of [42, null, undefined, { a: 1 }, [1]]) {
      expect(() => rawCodec.encode(value)).toThrow(TypeError)
    }
  })
})

describe("resolveCodec", () => {
  it("resolves names and accepts custom codecs", () => {
    expect(resolveCodec(undefined)).toBe(msgpackCodec)
    expect(resolveCodec("msgpack")).toBe(msgpackCodec)
    expect(resolveCodec("raw")).toBe(rawCodec)
    const json: Codec = {
      name: "json",
      encode: (v) => Buffer.from(JSON.stringify(v)),
      decode: (f) => JSON.parse(f.toString()) as unknown,
    }
    expect(resolveCodec(json)).toBe(json)
  })

  it("throws a TypeError naming 'codec' for anything else", () => {
    // @ts-expect-error wrong on purpose
    expect(() => resolveCodec("json")).toThrow(/'codec'/)
    // @ts-expect-error wrong on purpose
    expect(() => resolveCodec({ encode: () => Buffer.alloc(0) })).toThrow(TypeError)
  })
})

describe("protocol metadata", () => {
  it("round-trips and rejects garbage with PIRATE_PROTOCOL", () => {
    expect(unpackMeta(packMeta({ credit: 8 }))).toEqual({ credit: 8 })
    expect(() => unpackMeta(Buffer.from([0x92, 0x01]))).toThrow(
      expect.objectContaining({ code: "PIRATE_PROTOCOL" }),
    )
  })
})
