import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { msgpackCodec } from "../../lib/codec.js"
import { decodeRequestRecord, encodeRequestRecord } from "../../lib/request-record.js"

describe("request records (a queue's journaled requests)", () => {
  it("round-trip a request id (or none) and any body", () => {
    fc.assert(
      fc.property(
        fc.option(fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 64 }), {
          nil: undefined,
        }),
        fc.uint8Array({ maxLength: 200 }),
        (requestId, bytes) => {
          const body = Buffer.from(bytes)
          expect(decodeRequestRecord(encodeRequestRecord(requestId, body))).toEqual({
            requestId,
            body,
          })
        },
      ),
    )
  })

  it("never take a msgpack payload for a record", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(decodeRequestRecord(msgpackCodec.encode(value))).toBeNull()
      }),
    )
  })

  it("refuse an id longer than a request id may be", () => {
    expect(() => encodeRequestRecord("x".repeat(65), Buffer.alloc(0))).toThrow(RangeError)
    const bad = Buffer.concat([encodeRequestRecord(undefined, Buffer.alloc(0)).subarray(0, 5)])
    expect(decodeRequestRecord(Buffer.concat([bad, Buffer.from([200])]))).toBeNull()
  })
})
