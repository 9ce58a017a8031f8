import fc from "fast-check"
import { Packr } from "msgpackr"
import { execFileSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { SPLIT_BYTES, bodyLength, bodyParts, joinBody } from "../../lib/body.js"
import {
  encodeBody,
  msgpackCodec,
  packMeta,
  rawCodec,
  resolveCodec,
  unpackMeta,
  type Codec,
} from "../../lib/codec.js"
import { PirateError } from "../../lib/errors.js"
import { PYTHON, pythonMissing, requirePrereq } from "../helpers/prereq.js"

/** msgpackr as the codec configures it: what peers have always received. */
const reference = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

/** `n` bytes counting up from `start` (mod 256). */
function bytes(n: number, start = 0): Buffer {
  const out = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) out[i] = (start + i) & 0xff
  return out
}

/** Sizes around each bin header's limits: bin8 up to 255, bin16 up to 65 535, bin32 beyond. */
const BIN_SIZES = [0, 1, 31, 32, 255, 256, 65_535, 65_536, 70_000]

/** A structured payload of 10 fields, about 256 bytes encoded: what most applications send. */
const structured = {
  id: 123_456_789,
  type: "image.resize",
  user: "user-4711@example.com",
  width: 1920,
  height: 1080,
  quality: 0.85,
  tags: ["thumbnail", "webp", "retina"],
  createdAt: 1_765_000_000_000,
  source: "s3://media-uploads/2026/12/07/IMG_4711.jpg",
  note: "n".repeat(80),
}

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

  it("writes a Buffer or Uint8Array as one bin, byte for byte as msgpackr does", () => {
    for (const n of BIN_SIZES) {
      const buf = bytes(n, n)
      const frame = msgpackCodec.encode(buf)
      expect(frame.equals(reference.pack(buf))).toBe(true)
      const header = n < 0x100 ? [0xc4, n] : n < 0x10000 ? [0xc5, n >> 8, n & 0xff] : [0xc6]
      expect([...frame.subarray(0, header.length)]).toEqual(header)
      expect(frame.length).toBe((n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) + n)
      // A Uint8Array, or a view into a larger one, writes its own bytes only.
      const larger = bytes(n + 8, n - 4)
      const view = new Uint8Array(larger.buffer, larger.byteOffset + 4, n)
      expect(msgpackCodec.encode(view).equals(frame)).toBe(true)
      expect(msgpackCodec.encode(view).equals(reference.pack(view))).toBe(true)
    }
  })

  it("writes true, false and null as one byte, as msgpackr does", () => {
    for (const value of [true, false, null]) {
      const frame = msgpackCodec.encode(value)
      expect(frame.equals(reference.pack(value))).toBe(true)
      expect(frame.length).toBe(1)
    }
    // Each encode is a Buffer of its own: changing one never changes the next.
    const a = msgpackCodec.encode(true)
    a[0] = 0
    expect([...msgpackCodec.encode(true)]).toEqual([0xc3])
  })

  it("writes everything else as msgpackr does (strings, numbers, arrays, objects)", () => {
    const values: unknown[] = [
      "",
      "a",
      "x".repeat(31),
      "x".repeat(32),
      "é✓😀".repeat(100),
      "\ud800 lone surrogate",
      "y".repeat(70_000),
      0,
      -1,
      2 ** 40,
      1.5,
      [bytes(3)],
      { payload: bytes(300) },
      structured,
    ]
    for (const value of values) {
      expect(msgpackCodec.encode(value).equals(reference.pack(value))).toBe(true)
    }
  })

  it("round-trips Buffers and Uint8Arrays of every bin size as Buffers", () => {
    for (const n of BIN_SIZES) {
      const buf = bytes(n, 7)
      const back = msgpackCodec.decode(msgpackCodec.encode(buf))
      expect(Buffer.isBuffer(back)).toBe(true)
      expect((back as Buffer).equals(buf)).toBe(true)
      const array = new Uint8Array(buf)
      const fromArray = msgpackCodec.decode(msgpackCodec.encode(array)) as Buffer
      expect(Buffer.isBuffer(fromArray)).toBe(true)
      expect(fromArray.equals(buf)).toBe(true)
    }
  })

  it("decodes a frame that is one bin to a view of the frame, without copying", () => {
    for (const n of [0, 5, 300, 70_000]) {
      const frame = msgpackCodec.encode(bytes(n))
      const header = frame.length - n
      const back = msgpackCodec.decode(frame) as Buffer
      expect(back.buffer).toBe(frame.buffer)
      expect(back.byteOffset).toBe(frame.byteOffset + header)
      expect(back.length).toBe(n)
    }
    // Also a bin inside a larger received frame (the bodies of a batch arrive that way).
    const batch = Buffer.concat([Buffer.from([9, 9, 9]), msgpackCodec.encode(bytes(10))])
    const body = batch.subarray(3)
    const back = msgpackCodec.decode(body) as Buffer
    expect(back.buffer).toBe(batch.buffer)
    expect(back.equals(bytes(10))).toBe(true)
  })

  it("round-trips strings, empty and large, and structured objects", () => {
    const values: unknown[] = [
      "",
      "x".repeat(70_000),
      "é✓😀".repeat(20_000),
      structured,
      { nested: { list: [structured, bytes(4)], empty: {}, none: null } },
    ]
    for (const value of values) {
      expect(msgpackCodec.decode(msgpackCodec.encode(value))).toEqual(value)
    }
  })

  it("decodes frames that msgpackr wrote, and what it decodes, the same way", () => {
    for (const value of [true, false, null, bytes(0), bytes(200), bytes(70_000), structured]) {
      expect(msgpackCodec.decode(reference.pack(value))).toEqual(
        reference.unpack(reference.pack(value)),
      )
    }
  })

  it.runIf(requirePrereq("msgpack interop with Python", pythonMissing("msgpack")))(
    "is plain msgpack that Python's msgpack reads and writes back the same",
    () => {
      const values: unknown[] = [
        true,
        false,
        null,
        bytes(0),
        bytes(200),
        bytes(300),
        bytes(70_000),
        "héllo ✓",
        "x".repeat(300),
        structured,
      ]
      const input = values.map((v) => msgpackCodec.encode(v).toString("hex")).join("\n") + "\n"
      // Python unpacks each frame and packs the value again (bin stays bin, str stays str).
      const script = [
        "import sys, msgpack",
        "for line in sys.stdin:",
        "    value = msgpack.unpackb(bytes.fromhex(line.strip()), raw=False)",
        "    print(msgpack.packb(value, use_bin_type=True).hex())",
      ].join("\n")
      const output = execFileSync(PYTHON, ["-c", script], { input, encoding: "utf8" })
      const frames = output
        .trim()
        .split("\n")
        .map((hex) => Buffer.from(hex, "hex"))
      expect(frames).toHaveLength(values.length)
      values.forEach((value, i) => {
        const frame = frames[i] as Buffer
        expect(msgpackCodec.decode(frame)).toEqual(value)
        // Bins, one-byte values and strings are written the same way by both.
        if (typeof value !== "object" || value === null || Buffer.isBuffer(value))
          expect(frame.equals(msgpackCodec.encode(value))).toBe(true)
      })
    },
  )

  it("decode errors are PirateErrors with code PIRATE_DECODE", () => {
    for (const bad of [
      [],
      [0x92, 0x01],
      [0xd9],
      [0xff, 0xff],
      [0x81],
      [0xc1],
      // bins whose length does not match the frame: short, long, truncated headers
      [0xc4],
      [0xc4, 0x03, 0x01, 0x02],
      [0xc4, 0x01, 0x01, 0x02],
      [0xc5, 0x00],
      [0xc5, 0x00, 0x02, 0x01],
      [0xc6, 0x00, 0x00, 0x00],
      [0xc6, 0x00, 0x00, 0x00, 0x02, 0x01],
      [0xc6, 0xff, 0xff, 0xff, 0xff, 0x01],
    ]) {
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

  it("refuses other values with PIRATE_ENCODE, the reason a TypeError in `cause`", () => {
    for (const [value, type] of [
      [42, "number"],
      [null, "null"],
      [undefined, "undefined"],
      [{ a: 1 }, "object"],
      [[1], "object"],
    ] as const) {
      expect(() => rawCodec.encode(value)).toThrow(
        expect.objectContaining({
          name: "PirateError",
          code: "PIRATE_ENCODE",
          message: `the raw codec cannot encode the payload: it sends a Buffer, a Uint8Array or a string as it is, got ${type}`,
          cause: expect.any(TypeError) as unknown,
        }),
      )
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

describe("split bodies (lib/body.ts)", () => {
  it("the default codec's body of a large byte array is its bin header and the array, not a copy", () => {
    const bytes = Buffer.alloc(SPLIT_BYTES, 7)
    const body = encodeBody(msgpackCodec, bytes)
    const parts = bodyParts(body)
    expect(parts).toHaveLength(2)
    expect(parts[1]?.buffer).toBe(bytes.buffer) // the same memory
    expect(joinBody(body).equals(msgpackCodec.encode(bytes))).toBe(true)
    expect(bodyLength(body)).toBe(SPLIT_BYTES + 5)
    expect((msgpackCodec.decode(body) as Buffer).equals(bytes)).toBe(true)
    expect((rawCodec.decode(body) as Buffer).equals(joinBody(body))).toBe(true)
  })

  it("small arrays, other values and other codecs give whole bodies", () => {
    for (const [codec, value] of [
      [msgpackCodec, Buffer.alloc(SPLIT_BYTES - 1)],
      [msgpackCodec, { a: 1 }],
      [rawCodec, Buffer.alloc(SPLIT_BYTES)],
    ] as const) {
      const body = encodeBody(codec, value)
      expect(bodyParts(body)).toEqual([body])
      expect(body.equals(codec.encode(value))).toBe(true)
    }
  })
})
