import { C1, Packr } from "msgpackr"
import { PirateError, errorMessage } from "./errors.js"

/** Turns payloads into frames and back. */
export interface Codec {
  /** Name shown in errors and stats. */
  readonly name: string
  encode(value: unknown): Buffer
  /** Throws a `PirateError` with code `PIRATE_DECODE` when the frame is not valid. */
  decode(frame: Buffer): unknown
}

/** `"msgpack"` (default: any msgpack-encodable value), `"raw"` (Buffers/strings pass through), or your own. */
export type CodecOption = "msgpack" | "raw" | Codec

// Plain msgpack (no record extension) so that peers in other languages can read the payloads.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })

export const msgpackCodec: Codec = Object.freeze({
  name: "msgpack",
  encode(value: unknown): Buffer {
    return packr.pack(value)
  },
  decode(frame: Buffer): unknown {
    if (frame.length === 0)
      throw new PirateError("PIRATE_DECODE", "cannot decode an empty frame as msgpack")
    let value: unknown
    try {
      value = packr.unpack(frame)
    } catch (err) {
      throw new PirateError("PIRATE_DECODE", `payload is not valid msgpack: ${errorMessage(err)}`, {
        cause: err,
      })
    }
    // msgpackr returns a marker for the never-used byte 0xc1 instead of failing.
    if (value === C1)
      throw new PirateError(
        "PIRATE_DECODE",
        "payload is not valid msgpack: byte 0xc1 is never used",
      )
    return value
  },
})

export const rawCodec: Codec = Object.freeze({
  name: "raw",
  encode(value: unknown): Buffer {
    if (Buffer.isBuffer(value)) return value
    if (typeof value === "string") return Buffer.from(value)
    if (value instanceof Uint8Array)
      return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    throw new TypeError(`the raw codec sends Buffers, Uint8Arrays and strings, got ${typeof value}`)
  },
  decode(frame: Buffer): Buffer {
    return frame
  },
})

/** Resolves a codec option. */
export function resolveCodec(option: CodecOption | undefined): Codec {
  if (option === undefined || option === "msgpack") return msgpackCodec
  if (option === "raw") return rawCodec
  if (
    typeof option === "object" &&
    typeof option.encode === "function" &&
    typeof option.decode === "function"
  ) {
    return option
  }
  throw new TypeError(`'codec' must be "msgpack", "raw" or an object with encode() and decode()`)
}

/** msgpack helpers for protocol metadata (never user payloads). */
export function packMeta(value: unknown): Buffer {
  return packr.pack(value)
}

/** Decodes protocol metadata; throws `PIRATE_PROTOCOL` on garbage. */
export function unpackMeta(frame: Buffer): unknown {
  try {
    return packr.unpack(frame)
  } catch (err) {
    throw new PirateError("PIRATE_PROTOCOL", `invalid metadata frame: ${errorMessage(err)}`, {
      cause: err,
    })
  }
}
