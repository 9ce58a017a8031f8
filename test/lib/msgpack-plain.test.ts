/**
 * The default codec's fast path for plain data (lib/msgpack-plain.ts) must be msgpackr, byte for
 * byte when encoding and value for value (or failure for failure) when decoding: peers in other
 * languages and older versions of this library see no difference.
 */
import fc from "fast-check"
import { C1, Packr } from "msgpackr"
import { describe, expect, it } from "vitest"
import { decodeRange, msgpackCodec } from "../../lib/codec.js"
import { NOT_PLAIN, decodePlain } from "../../lib/msgpack-plain.js"

/** msgpackr as the codec configures it: what peers have always received. */
const reference = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

/** What msgpackr decodes `frame` to, or "error" (the codec's C1 marker counts as one). */
function referenceDecode(frame: Buffer): { value: unknown } | "error" {
  try {
    const value: unknown = reference.unpack(frame)
    return value === C1 ? "error" : { value }
  } catch {
    return "error"
  }
}

function ourDecode(frame: Buffer): { value: unknown } | "error" {
  try {
    return { value: msgpackCodec.decode(frame) }
  } catch (err) {
    expect(err).toMatchObject({ code: "PIRATE_DECODE" })
    return "error"
  }
}

/** Where two encodings first differ (-1: nowhere), and the bytes there: a short report. */
function firstDifference(
  ours: Buffer,
  theirs: Buffer,
): { at: number; ours: string; theirs: string } {
  let at = 0
  while (at < ours.length && at < theirs.length && ours[at] === theirs[at]) at++
  if (at === ours.length && at === theirs.length) return { at: -1, ours: "", theirs: "" }
  const around = (b: Buffer): string => b.subarray(Math.max(0, at - 4), at + 8).toString("hex")
  return { at, ours: around(ours), theirs: around(theirs) }
}

function expectSameBytes(value: unknown): void {
  const ours = msgpackCodec.encode(value)
  const theirs = reference.pack(value)
  expect(firstDifference(ours, theirs)).toEqual({ at: -1, ours: "", theirs: "" })
}

function expectSameDecode(frame: Buffer): void {
  expect(ourDecode(frame)).toStrictEqual(referenceDecode(frame))
}

class Point {
  x: number
  y: number
  constructor(x: number, y: number) {
    this.x = x
    this.y = y
  }
}
class Stamp {
  toJSON(): string {
    return "stamp"
  }
}

/** Integers at every boundary of msgpack's integer widths, and the floats around them. */
const NUMBERS = [
  0,
  1,
  0x1f,
  0x20,
  0x3f,
  0x40,
  0x7f,
  0x80,
  0xff,
  0x100,
  0xffff,
  0x10000,
  0xffff_ffff,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -1,
  -0x20,
  -0x21,
  -0x80,
  -0x81,
  -0x8000,
  -0x8001,
  -(2 ** 31),
  -(2 ** 31) - 1,
  -(2 ** 53),
  0.5,
  -0.5,
  1e-300,
  1.7976931348623157e308,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -0,
  123_456_789,
  1_765_000_000_000,
  0.85,
]

/** Strings around each str header's limits, in bytes and in UTF-16 code units. */
const STRINGS = [
  "",
  "a",
  "resize",
  "x".repeat(31),
  "x".repeat(32),
  "x".repeat(63),
  "x".repeat(64),
  "x".repeat(227),
  "x".repeat(255),
  "x".repeat(256),
  "x".repeat(65_535),
  "x".repeat(65_536),
  "é".repeat(15),
  "é".repeat(16), // 16 units, 32 bytes: a str8 after a one-byte header was reserved
  "é".repeat(31),
  "✓".repeat(85), // 255 bytes
  "✓".repeat(86), // 258 bytes from 86 units: str16 after str8 was reserved
  "✓".repeat(21_845), // 65 535 bytes
  "✓".repeat(21_846), // 65 538 bytes from < 65 536 units: str32 after str16 was reserved
  "😀".repeat(40),
  "héllo ✓ 😀",
  "\ud800",
  "lone \udc00 surrogate",
  "\ud83d".repeat(70),
  "\u0000\u007f\u0080\u07ff\u0800\uffff",
  "__proto__",
]

describe("plain msgpack fast path: encoding", () => {
  it("writes numbers of every width as msgpackr does", () => {
    for (const n of NUMBERS) {
      expectSameBytes({ n })
      expectSameBytes([n])
    }
  })

  it("writes strings of every length and kind as msgpackr does, as keys and as values", () => {
    for (const s of STRINGS) {
      expectSameBytes({ s })
      expectSameBytes({ [s]: 1 })
      expectSameBytes([s, s])
    }
  })

  it("writes the benchmark's and other usual payloads as msgpackr does", () => {
    const payloads: unknown[] = [
      { seq: 123_456_789, task: "resize", file: "x".repeat(227) },
      {
        id: 123_456_789,
        type: "image.resize",
        tags: ["thumbnail", "webp"],
        quality: 0.85,
        createdAt: 1_765_000_000_000,
      },
      {},
      [],
      { a: { b: { c: [1, [2, [3, {}]]] } } },
      { u: undefined, n: null, t: true, f: false },
      [undefined, null],
      // a hole reads as undefined, as msgpackr writes it
      // eslint-disable-next-line no-sparse-arrays
      [1, , 3],
      Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])),
      Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, "v".repeat(i)])),
      Array.from({ length: 16 }, (_, i) => i),
      Array.from({ length: 70_000 }, (_, i) => i & 0xff),
    ]
    for (const value of payloads) expectSameBytes(value)
  })

  it("hands every other value inside a plain object to msgpackr, and its bytes are msgpackr's", () => {
    const others: unknown[] = [
      Buffer.from([1, 2, 3]),
      new Uint8Array(300),
      new Date(1_765_000_000_000),
      new Date(Number.NaN),
      new Map<unknown, unknown>([
        ["a", 1],
        [2, { b: [3] }],
      ]),
      new Set([1, "two"]),
      new Point(1, 2),
      new Stamp(),
      Object.create(null) as unknown,
      Object.assign(Object.create({ inherited: 1 }) as object, { own: 2 }),
      10n,
      -(2n ** 63n),
      2n ** 64n - 1n,
      () => 1,
      new Error("boom"),
      /re/g,
      new Float64Array([1.5]),
    ]
    for (const value of others) {
      expectSameBytes({ value, after: "x" })
      expectSameBytes([value, value])
    }
    // A symbol is refused by both.
    expect(() => reference.pack({ s: Symbol("s") })).toThrow()
    expect(() => msgpackCodec.encode({ s: Symbol("s") })).toThrow()
    // Plain objects keep toJSON as a field (msgpackr ignores it for them), instances call it.
    expectSameBytes({ toJSON: () => "ignored", a: 1 })
    expectSameBytes({ s: new Stamp() })
  })

  it("writes the same keys as msgpackr: own enumerable ones, in order, its own hasOwnProperty included", () => {
    const withGetter = Object.defineProperty({ a: 1 }, "g", { get: () => "got", enumerable: true })
    const hidden = Object.defineProperty({ a: 1 }, "h", { value: 2, enumerable: false })
    const ordered = { b: 1, 2: "two", a: 3, 1: "one" }
    const ownHasOwn = { hasOwnProperty: 5, a: 1 }
    const lyingHasOwn = { hasOwnProperty: (k: string) => k !== "a", a: 1, b: 2 }
    for (const value of [withGetter, hidden, ordered, ownHasOwn, lyingHasOwn])
      expectSameBytes(value)
    const proto = { inherited: 1 }
    const child = Object.assign(Object.create(proto) as Record<string, unknown>, { own: 2 })
    child["constructor"] = Object
    expectSameBytes(child)
  })

  it("reads each field once, even when a value goes to msgpackr", () => {
    let reads = 0
    const value = Object.defineProperty({ d: new Date(0) }, "g", {
      get: () => {
        reads++
        return new Map([[1, 2]])
      },
      enumerable: true,
    })
    const frame = msgpackCodec.encode(value)
    expect(reads).toBe(1)
    expect(frame.equals(reference.pack(value))).toBe(true)
  })

  it("lets a getter encode meanwhile (a nested encode goes to msgpackr)", () => {
    let inner: Buffer | undefined
    const value = Object.defineProperty({ a: "x".repeat(100) }, "g", {
      get: () => {
        inner = msgpackCodec.encode({ nested: "y".repeat(100) })
        return 1
      },
      enumerable: true,
    })
    const frame = msgpackCodec.encode(value)
    expect(frame.equals(reference.pack({ a: "x".repeat(100), g: 1 }))).toBe(true)
    expect(inner?.equals(reference.pack({ nested: "y".repeat(100) }))).toBe(true)
  })

  it("throws as msgpackr does, and the next encoding is whole", () => {
    const circular: Record<string, unknown> = { a: 1 }
    circular["self"] = circular
    expect(() => msgpackCodec.encode(circular)).toThrow(
      expect.objectContaining({ code: "PIRATE_ENCODE", cause: expect.any(RangeError) as unknown }),
    )
    const huge = 2n ** 70n
    expect(() => msgpackCodec.encode({ huge })).toThrow(
      expect.objectContaining({
        code: "PIRATE_ENCODE",
        message: expect.stringMatching(/64 bits/) as unknown,
      }),
    )
    expectSameBytes({ after: "error", n: 1 })
  })

  it("never changes an encoding it returned: later ones go elsewhere, across scratch buffers", () => {
    const kept: { value: unknown; frame: Buffer; hex: string }[] = []
    for (let i = 0; i < 2000; i++) {
      // sizes from a few bytes to beyond one scratch buffer (64 KiB)
      const value = { i, s: "z".repeat(i % 7 === 0 ? i * 37 : i % 300) }
      const frame = msgpackCodec.encode(value)
      kept.push({ value, frame, hex: frame.toString("hex") })
    }
    for (const k of kept) {
      expect(k.frame.toString("hex") === k.hex).toBe(true)
      expect(firstDifference(k.frame, reference.pack(k.value)).at).toBe(-1)
    }
  })

  it("writes anything as msgpackr does (property)", () => {
    fc.assert(
      fc.property(
        fc.anything({
          withBigInt: true,
          withDate: true,
          withMap: true,
          withSet: true,
          withNullPrototype: true,
          withObjectString: true,
          withBoxedValues: true,
          withTypedArray: true,
          withSparseArray: true,
          stringUnit: "binary",
          maxDepth: 4,
        }),
        (value) => {
          let theirs: string
          try {
            theirs = reference.pack(value).toString("hex")
          } catch {
            expect(() => msgpackCodec.encode(value)).toThrow()
            return
          }
          expect(msgpackCodec.encode(value).toString("hex")).toBe(theirs)
        },
      ),
      { numRuns: 2000 },
    )
  })

  it("writes strings of any code points, lone surrogates included, as msgpackr does (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 400 }),
        fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }),
        (a, b) => {
          expectSameBytes({ [a]: b, b: a })
        },
      ),
      { numRuns: 2000 },
    )
  })
})

describe("plain msgpack fast path: decoding", () => {
  it("decodes numbers, strings and nesting as msgpackr does", () => {
    for (const n of NUMBERS) expectSameDecode(reference.pack({ n, list: [n] }))
    for (const s of STRINGS) expectSameDecode(reference.pack({ [s]: s, list: [s] }))
    // Widths the encoder never writes for these values but other peers may.
    const frames = [
      [0xca, 0x3f, 0xc0, 0x00, 0x00], // float32 1.5
      [0xcc, 0x05], // uint8 5
      [0xcd, 0x00, 0x05], // uint16 5
      [0xce, 0x00, 0x00, 0x00, 0x05], // uint32 5
      [0xd0, 0x05], // int8 5
      [0xd0, 0x80], // int8 -128
      [0xd1, 0xff, 0xfe], // int16 -2
      [0xd2, 0xff, 0xff, 0xff, 0xfe], // int32 -2
      [0xd9, 0x01, 0x61], // str8 "a"
      [0xda, 0x00, 0x01, 0x61], // str16 "a"
      [0xdb, 0x00, 0x00, 0x00, 0x01, 0x61], // str32 "a"
      [0xdc, 0x00, 0x01, 0x01], // array16 [1]
      [0xdd, 0x00, 0x00, 0x00, 0x01, 0x01], // array32 [1]
      [0x81, 0xa1, 0x61, 0x01], // fixmap {a: 1}
      [0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 0x61, 0x01], // map32 {a: 1}
      [0x81, 0xd9, 0x01, 0x61, 0x01], // a str8 key
      [0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02], // a key twice: the last one wins
      [0x81, 0xa9, ...Buffer.from("__proto__"), 0x81, 0xa1, 0x70, 0xc3], // never a prototype
    ]
    for (const bytes of frames) {
      const frame = Buffer.from(bytes)
      expect(decodePlain(frame, 0, frame.length)).not.toBe(NOT_PLAIN)
      expectSameDecode(frame)
    }
  })

  it("leaves everything else to msgpackr, which decodes it or fails as before", () => {
    const frames = [
      reference.pack({ b: Buffer.from([1, 2]) }), // bin
      reference.pack({ u: undefined }), // ext
      reference.pack({ d: new Date(0) }), // timestamp ext
      reference.pack(new Map([[1, "one"]])), // a number key
      reference.pack({ big: 2n ** 40n }), // int64
      Buffer.from([0xcf, 0, 0, 0, 1, 0, 0, 0, 0]), // uint64
      Buffer.from([0x81, 0xc0, 0x01]), // a nil key
      Buffer.from([0xa2, 0xc3, 0x28]), // invalid UTF-8
      Buffer.from([0xa3, 0xe2, 0x82, 0xac]), // "€", valid
      Buffer.from([0xa3, 0xef, 0xbf, 0xbd]), // U+FFFD itself, valid
      Buffer.from([0x01, 0x02]), // trailing bytes
      Buffer.from([0x92, 0x01]), // truncated array
      Buffer.from([0x81, 0xa1, 0x61]), // truncated map
      Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]), // an array longer than the frame
      Buffer.from([0xd9, 0x05, 0x61]), // a truncated string
      Buffer.from([0xc1]),
      Buffer.from([0xcb, 0x00]),
    ]
    for (const frame of frames) {
      expectSameDecode(frame)
      // Inside a larger frame too, as the bodies of a batch arrive.
      const batch = Buffer.concat([Buffer.from([0x92, 0xc3]), frame, Buffer.from([0xc3])])
      const ours = (() => {
        try {
          return { value: decodeRange(msgpackCodec, batch, 2, 2 + frame.length) }
        } catch {
          return "error"
        }
      })()
      expect(ours).toStrictEqual(referenceDecode(frame))
    }
    for (const frame of frames.slice(0, 8))
      expect(decodePlain(frame, 0, frame.length)).toBe(NOT_PLAIN)
  })

  it("decodes deep nesting as msgpackr does, or leaves it to msgpackr", () => {
    for (const depth of [100, 100_000]) {
      // [[[…[1]…]]] and {a:{a:…{a:1}…}}, written by hand: too deep for msgpackr to write
      const arrays = Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0x01])])
      const maps = Buffer.concat([
        Buffer.from(Array.from({ length: depth }, () => [0x81, 0xa1, 0x61]).flat()),
        Buffer.from([0x01]),
      ])
      for (const frame of [arrays, maps]) {
        let theirs: unknown
        try {
          theirs = reference.unpack(frame)
        } catch (err) {
          theirs = err instanceof Error ? err.constructor : err
        }
        let ours: unknown
        try {
          ours = msgpackCodec.decode(frame)
        } catch (err) {
          ours = (err as { cause?: unknown }).cause
          ours = ours instanceof Error ? ours.constructor : ours
        }
        expect(ours).toStrictEqual(theirs)
      }
    }
  })

  it("reads only its range of a frame, and never keeps the frame", () => {
    const body = reference.pack({ seq: 1, task: "resize", file: "x".repeat(227) })
    const frame = Buffer.concat([Buffer.from([0xc1, 0xc1]), body, Buffer.from([0xc1])])
    const value = decodeRange(msgpackCodec, frame, 2, 2 + body.length)
    expect(value).toStrictEqual(reference.unpack(body))
    frame.fill(0)
    expect(value).toStrictEqual(reference.unpack(body))
  })

  it("decodes what msgpackr wrote as msgpackr does (property)", () => {
    fc.assert(
      fc.property(
        fc.anything({
          withDate: true,
          withMap: true,
          withSet: true,
          withTypedArray: true,
          withSparseArray: true,
          stringUnit: "binary",
          maxDepth: 4,
        }),
        (value) => {
          let frame: Buffer
          try {
            frame = reference.pack(value)
          } catch {
            return
          }
          expectSameDecode(frame)
        },
      ),
      { numRuns: 2000 },
    )
  })

  it("decodes any bytes as msgpackr does, or fails where it fails (property)", () => {
    const plainish = fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      // plain headers followed by anything, so that the fast path is entered
      fc
        .tuple(
          fc.constantFrom(0x81, 0x82, 0x91, 0x92, 0xa3, 0xd9, 0xdc, 0xde, 0xca, 0xcb, 0xd2),
          fc.uint8Array({ maxLength: 40 }),
        )
        .map(([h, rest]) => Uint8Array.of(h, ...rest)),
    )
    fc.assert(
      fc.property(plainish, (bytes) => {
        expectSameDecode(Buffer.from(bytes))
      }),
      { numRuns: 5000 },
    )
  })
})
