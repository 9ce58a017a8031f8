/**
 * View-free readers and writers of packed frames: `recordBounds` agrees with
 * `unpackEnvelopes`/`unpackBodies`, `decodeEnvelopeAt` with `decodeEnvelope`, and
 * `packEnvelopeRecords` with `packEnvelopes`, on any input.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  MAX_ID_LENGTH,
  decodeEnvelope,
  decodeEnvelopeAt,
  encodeEnvelope,
  packBodies,
  packEnvelopeRecords,
  packEnvelopes,
  recordBounds,
  unpackBodies,
  unpackEnvelopes,
} from "../../lib/protocol.js"

/** The records `bounds` names in `frame`, as views (what the unpack functions return). */
function views(frame: Buffer, bounds: number[]): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < bounds.length; i += 2) out.push(frame.subarray(bounds[i], bounds[i + 1]))
  return out
}

/** A packed frame, often damaged: cut short, extended, or with a byte changed. */
function damaged(frame: Buffer, how: number, where: number, byte: number): Buffer {
  if (how === 0 || frame.length === 0) return frame
  if (how === 1) return frame.subarray(0, where % frame.length)
  if (how === 2) return Buffer.concat([frame, Buffer.from([byte])])
  const copy = Buffer.from(frame)
  copy[where % copy.length] = byte
  return copy
}

describe("recordBounds", () => {
  it("names the records unpackEnvelopes returns, and is null exactly when it is (property)", () => {
    const envelope = fc.uint8Array({ minLength: 1, maxLength: 255 }).map((u) => Buffer.from(u))
    fc.assert(
      fc.property(
        fc.array(envelope, { maxLength: 12 }),
        fc.nat(3),
        fc.nat(),
        fc.nat(255),
        fc.option(fc.nat(14), { nil: undefined }),
        (envelopes, how, where, byte, count) => {
          const frame = damaged(packEnvelopes(envelopes), how, where, byte)
          const expected = unpackEnvelopes(frame, count)
          const bounds = recordBounds(frame, count ?? Infinity, 1)
          if (expected === null) expect(bounds).toBeNull()
          else expect(views(frame, bounds as number[])).toEqual(expected)
        },
      ),
    )
  })

  it("names the records unpackBodies returns, and is null exactly when it is (property)", () => {
    const body = fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u))
    fc.assert(
      fc.property(
        fc.array(body, { maxLength: 8 }),
        fc.nat(3),
        fc.nat(),
        fc.nat(255),
        fc.nat(10),
        (bodies, how, where, byte, count) => {
          const frame = damaged(packBodies(bodies), how, where, byte)
          const expected = unpackBodies(frame, count)
          const bounds = recordBounds(frame, count, 4)
          if (expected === null) expect(bounds).toBeNull()
          else expect(views(frame, bounds as number[])).toEqual(expected)
        },
      ),
    )
  })

  it("is null for a missing frame and for an empty envelopes frame", () => {
    expect(recordBounds(undefined, 1, 4)).toBeNull()
    expect(recordBounds(Buffer.alloc(0), Infinity, 1)).toBeNull()
    expect(recordBounds(packBodies([Buffer.from("a")]), 0, 4)).toBeNull()
    expect(recordBounds(packEnvelopes([Buffer.from("ab"), Buffer.from("c")]), 2, 1)).toEqual([
      1, 3, 4, 5,
    ])
  })
})

describe("decodeEnvelopeAt", () => {
  it("reads a record of a packed frame as decodeEnvelope reads its view (property)", () => {
    const ours = fc
      .tuple(fc.string({ minLength: 1, maxLength: MAX_ID_LENGTH }), fc.nat())
      .map(([id, attempt]) => encodeEnvelope(id.replace(/[^\x20-\x7e]/g, "x"), attempt))
    const any = fc.uint8Array({ minLength: 1, maxLength: 80 }).map((u) => Buffer.from(u))
    fc.assert(
      fc.property(fc.array(fc.oneof(ours, any), { minLength: 1, maxLength: 6 }), (envelopes) => {
        const frame = packEnvelopes(envelopes)
        const bounds = recordBounds(frame, Infinity, 1) as number[]
        envelopes.forEach((envelope, i) => {
          const got = decodeEnvelopeAt(frame, bounds[2 * i] as number, bounds[2 * i + 1] as number)
          expect(got).toEqual(decodeEnvelope(envelope))
        })
      }),
    )
  })
})

describe("packEnvelopeRecords", () => {
  it("packs records of packed frames and whole envelopes as packEnvelopes packs their views (property)", () => {
    const envelope = fc.uint8Array({ minLength: 1, maxLength: 255 }).map((u) => Buffer.from(u))
    fc.assert(
      fc.property(
        fc.array(fc.tuple(envelope, fc.boolean()), { maxLength: 10 }),
        fc.array(envelope, { minLength: 1, maxLength: 4 }),
        (picks, others) => {
          // Each envelope is either whole (at -1) or a record of a packed frame among others.
          const frames: Buffer[] = []
          const at: number[] = []
          for (const [envelope, packed] of picks) {
            if (!packed) {
              frames.push(envelope)
              at.push(-1)
              continue
            }
            const frame = packEnvelopes([...others, envelope, ...others])
            const bounds = recordBounds(frame, Infinity, 1) as number[]
            frames.push(frame)
            at.push((bounds[2 * others.length] as number) - 1) // its length byte
          }
          expect(packEnvelopeRecords(frames, at)).toEqual(packEnvelopes(picks.map(([e]) => e)))
        },
      ),
    )
  })

  it("refuses a whole envelope of more than 255 bytes, as packEnvelopes does", () => {
    expect(() => packEnvelopeRecords([Buffer.alloc(256)], [-1])).toThrow(RangeError)
  })
})
