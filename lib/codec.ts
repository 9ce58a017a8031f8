import { C1, Packr } from "msgpackr"
import { SPLIT_BYTES, joinBody, prefixOf, splitBody } from "./body.js"
import { PirateError, errorMessage } from "./errors.js"
import { NOT_PLAIN, decodePlain, encodePlain, setPlainFallback } from "./msgpack-plain.js"

/** Turns payloads into frames and back. */
export interface Codec {
  /**
   * Names the codec, in errors and to peers: a `Worker` states its codec's name in its READY and a
   * `Sender` its own in WELCOME, and two peers whose codecs both have a name must have the same
   * one, or they refuse each other with `PIRATE_CODEC_MISMATCH` (the built-in codecs are
   * `"msgpack"` and `"raw"`). Leave it out (or empty) for a codec that is never checked. At most
   * 64 characters.
   */
  readonly name?: string
  /**
   * Throws when it cannot encode `value`; the roles report that as a `PIRATE_ENCODE`
   * `PirateError` whose `cause` is the error thrown here (the built-in codecs throw that
   * `PirateError` themselves).
   */
  encode(value: unknown): Buffer
  /** Throws a `PirateError` with code `PIRATE_DECODE` when the frame is not valid. */
  decode(frame: Buffer): unknown
}

/** `"msgpack"` (default: any msgpack-encodable value), `"raw"` (Buffers/strings pass through), or your own. */
export type CodecOption = "msgpack" | "raw" | Codec

// Plain msgpack (no record extension) so that peers in other languages can read the payloads.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })
const shapes = new Packr({ useRecords: true, mapsAsObjects: true, int64AsType: "number" })
// Values inside plain objects and arrays that lib/msgpack-plain.ts does not write itself.
setPlainFallback((value) => packr.pack(value))

// msgpack type bytes of the payloads written without msgpackr (msgpack spec, "formats").
const NIL = 0xc0
const FALSE = 0xc2
const TRUE = 0xc3
const BIN8 = 0xc4
const BIN16 = 0xc5
const BIN32 = 0xc6
/** Largest length a bin32 header can state. */
const MAX_BIN = 0xffff_ffff

/** One byte: `nil`, `false` or `true`. */
function single(byte: number): Buffer {
  const out = Buffer.allocUnsafe(1)
  out[0] = byte
  return out
}

/**
 * A byte array as msgpack bin, in the shortest header, as msgpackr writes it: the header and one
 * copy of the bytes (msgpackr takes about twice as long for 256 bytes).
 */
function encodeBin(bytes: Uint8Array): Buffer {
  const n = bytes.byteLength
  let out: Buffer
  if (n < 0x100) {
    out = Buffer.allocUnsafe(2 + n)
    out[0] = BIN8
    out[1] = n
  } else if (n < 0x10000) {
    out = Buffer.allocUnsafe(3 + n)
    out[0] = BIN16
    out.writeUInt16BE(n, 1)
  } else {
    if (n > MAX_BIN) throw new RangeError(`a msgpack bin holds at most ${MAX_BIN} bytes, got ${n}`)
    out = Buffer.allocUnsafe(5 + n)
    out[0] = BIN32
    out.writeUInt32BE(n, 1)
  }
  out.set(bytes, out.length - n)
  return out
}

/**
 * The default codec: plain msgpack. A Buffer or Uint8Array travels as one bin and
 * `true`/`false`/`null` as one byte, written here without msgpackr (the same bytes it writes);
 * anything else goes through msgpackr. A frame that is exactly one bin decodes to a Buffer that
 * is a view of the received frame (no copy, as msgpackr's own bin decoding): it shares that
 * memory and keeps all of it alive while referenced, so copy it (`Buffer.from(bytes)`) to keep
 * a small part for long.
 */
export const msgpackCodec: Codec = Object.freeze({
  name: "msgpack",
  encode(value: unknown): Buffer {
    try {
      if (value instanceof Uint8Array) return encodeBin(value)
      if (value === true) return single(TRUE)
      if (value === false) return single(FALSE)
      if (value === null) return single(NIL)
      return encodePlain(value) ?? packr.pack(value)
    } catch (err) {
      throw encodeError("msgpack", value, err)
    }
  },
  decode(frame: Buffer): unknown {
    if (frame.length === 0)
      throw new PirateError("PIRATE_DECODE", "cannot decode an empty frame as msgpack")
    const prefix = prefixOf(frame)
    if (prefix !== undefined) {
      // A bin received in two frames (its header, its bytes): the bytes are the value.
      if (prefix.length === 5 && prefix[0] === BIN32 && prefix.readUInt32BE(1) === frame.length)
        return frame
      return msgpackCodec.decode(joinBody(frame))
    }
    const bytes = binRange(frame, 0, frame.length)
    if (bytes !== undefined) return bytes
    const plain = decodePlain(frame, 0, frame.length)
    if (plain !== NOT_PLAIN) return plain
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
    throw encodeError(
      "raw",
      value,
      new TypeError(
        `it sends a Buffer, a Uint8Array or a string as it is, got ${value === null ? "null" : typeof value}`,
      ),
    )
  },
  decode(frame: Buffer): Buffer {
    return joinBody(frame)
  },
})

/**
 * The bytes of `frame[start, end)` when that range is exactly one msgpack bin, as a view of
 * `frame` (no copy), or `undefined` for anything else.
 */
function binRange(frame: Buffer, start: number, end: number): Buffer | undefined {
  const n = end - start
  const type = frame[start]
  if (type === BIN8)
    return n >= 2 && n === 2 + (frame[start + 1] as number)
      ? frame.subarray(start + 2, end)
      : undefined
  if (type === BIN16)
    return n >= 3 && n === 3 + frame.readUInt16BE(start + 1)
      ? frame.subarray(start + 3, end)
      : undefined
  if (type === BIN32)
    return n >= 5 && n === 5 + frame.readUInt32BE(start + 1)
      ? frame.subarray(start + 5, end)
      : undefined
  return undefined
}

/**
 * Decodes the body `frame[start, end)` (a record of a packed frame) as
 * `codec.decode(frame.subarray(start, end))` does, without that view for the built-in codecs:
 * the raw codec's Buffer and the default codec's bin are one view of `frame`.
 */
export function decodeRange(codec: Codec, frame: Buffer, start: number, end: number): unknown {
  if (codec === rawCodec) return frame.subarray(start, end)
  if (codec === msgpackCodec && end > start) {
    const bytes = binRange(frame, start, end)
    if (bytes !== undefined) return bytes
    const plain = decodePlain(frame, start, end)
    if (plain !== NOT_PLAIN) return plain
  }
  return codec.decode(frame.subarray(start, end))
}

/** The default codec's encodings of the replies most often sent, made once (see `encodeReply()`). */
const SHARED_NIL = single(NIL)
const SHARED_TRUE = single(TRUE)
const SHARED_FALSE = single(FALSE)
const SHARED_EMPTY_BIN = encodeBin(new Uint8Array(0))
const SHARED_UNDEFINED = Buffer.from(packr.pack(undefined))

/**
 * `codec.encode(value)` for a caller that only reads the result (it copies it into a packed frame
 * or hands it to ZeroMQ, which copies a small frame): the default codec's encodings of
 * `undefined`, `null`, `true`, `false` and an empty byte array (a handler's usual "done") are
 * Buffers made once and shared, never written to, instead of a new one per reply.
 */
export function encodeReply(codec: Codec, value: unknown): Buffer {
  if (codec === msgpackCodec) {
    if (value === undefined) return SHARED_UNDEFINED
    if (value === null) return SHARED_NIL
    if (value === true) return SHARED_TRUE
    if (value === false) return SHARED_FALSE
    if (value instanceof Uint8Array && value.byteLength === 0) return SHARED_EMPTY_BIN
  }
  return encodePayload(codec, value)
}

/**
 * The body a sender journals and sends for `value`: `codec.encode(value)`, except that the
 * default codec's body of a large byte array is split (a bin32 header, then the array as it is,
 * see lib/body.ts) instead of copied behind its header.
 */
export function encodeBody(codec: Codec, value: unknown): Buffer {
  if (codec === msgpackCodec && value instanceof Uint8Array && value.byteLength >= SPLIT_BYTES) {
    const n = value.byteLength
    if (n > MAX_BIN)
      throw encodeError(
        "msgpack",
        value,
        new RangeError(`a msgpack bin holds at most ${MAX_BIN} bytes, got ${n}`),
      )
    const header = Buffer.allocUnsafe(5)
    header[0] = BIN32
    header.writeUInt32BE(n, 1)
    return splitBody(header, value)
  }
  return encodePayload(codec, value)
}

/**
 * `codec.encode(value)`, with a failure as a `PIRATE_ENCODE` `PirateError` (`cause`: the codec's
 * error) whatever the codec threw, so that every role reports a payload or reply it cannot send
 * the same way. A `PirateError` the codec throws is kept as it is.
 */
export function encodePayload(codec: Codec, value: unknown): Buffer {
  try {
    return codec.encode(value)
  } catch (err) {
    throw err instanceof PirateError ? err : encodeError(codecName(codec) ?? "custom", value, err)
  }
}

/**
 * Error for a value the codec `name` cannot encode, naming the problem: a circular reference
 * (with its path), nesting too deep, or the codec's own message. `cause` is the codec's error.
 */
export function encodeError(name: string, value: unknown, err: unknown): PirateError {
  let problem = errorMessage(err)
  const big = /^(-?\d+) was too large to fit in MessagePack 64-bit/.exec(problem)
  if (big) problem = `it holds an integer beyond 64 bits (${big[1]}n); send it as a string`
  else if (/^Unknown type: symbol/.test(problem)) problem = "it holds a symbol"
  else if (err instanceof RangeError && /call stack/i.test(err.message)) {
    const cycle = findCycle(value)
    problem =
      cycle === undefined
        ? "it is nested too deeply"
        : `it contains a circular reference (${cycle}); msgpack can only encode trees`
  }
  return new PirateError(
    "PIRATE_ENCODE",
    `the ${name} codec cannot encode the payload: ${problem}`,
    {
      cause: err,
    },
  )
}

/**
 * The first circular reference in `root`, as `"payload.a[2] refers back to payload.a"`, or
 * `undefined`. Walks own enumerable properties, array items and the entries of Maps and Sets,
 * without recursion (a deep value must not overflow the stack here too).
 */
export function findCycle(root: unknown): string | undefined {
  const onPath = new Map<object, string>()
  const stack: { value: object; children: Iterator<[string, unknown]> }[] = []
  const enter = (value: unknown, path: string): string | undefined => {
    if (typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return undefined
    const seen = onPath.get(value)
    if (seen !== undefined) return `${path} refers back to ${seen}`
    onPath.set(value, path)
    stack.push({ value, children: childrenOf(value, path) })
    return undefined
  }
  let found = enter(root, "payload")
  while (found === undefined && stack.length > 0) {
    const top = stack[stack.length - 1] as (typeof stack)[number]
    const next = top.children.next()
    if (next.done === true) {
      onPath.delete(top.value)
      stack.pop()
    } else found = enter(next.value[1], next.value[0])
  }
  return found
}

function* childrenOf(value: object, path: string): Generator<[string, unknown]> {
  if (value instanceof Map) {
    for (const [k, v] of value as Map<unknown, unknown>) {
      yield [`${path}.get(${typeof k === "string" ? JSON.stringify(k) : String(k)})`, v]
    }
  } else if (value instanceof Set) {
    let i = 0
    for (const v of value as Set<unknown>) yield [`${path} (Set item ${i++})`, v]
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) yield [`${path}[${i}]`, value[i]]
  } else {
    for (const key of Object.keys(value)) {
      let child: unknown
      try {
        child = (value as Record<string, unknown>)[key]
      } catch {
        continue // a getter that throws: not a cycle
      }
      yield [
        /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`,
        child,
      ]
    }
  }
}

/** Resolves a codec option. */
export function resolveCodec(option: CodecOption | undefined): Codec {
  if (option === undefined || option === "msgpack") return msgpackCodec
  if (option === "raw") return rawCodec
  if (
    typeof option === "object" &&
    typeof option.encode === "function" &&
    typeof option.decode === "function"
  ) {
    const name: unknown = option.name
    if (name !== undefined && (typeof name !== "string" || name.length > MAX_CODEC_NAME))
      throw new TypeError(
        `'codec.name' must be a string of at most ${MAX_CODEC_NAME} characters, got ${typeof name === "string" ? `${name.length} characters` : typeof name}`,
      )
    return option
  }
  throw new TypeError(`'codec' must be "msgpack", "raw" or an object with encode() and decode()`)
}

/** Longest codec name a peer may state (READY, WELCOME). */
export const MAX_CODEC_NAME = 64

/**
 * The name a codec goes by on the wire (READY, WELCOME): its `name`, or `undefined` for a codec
 * without one (or with an empty one), which is never checked against a peer's.
 */
export function codecName(codec: Codec): string | undefined {
  const name = codec.name
  return typeof name === "string" && name.length > 0 ? name : undefined
}

/**
 * The `PIRATE_CODEC_MISMATCH` error when two codec names are both known and differ, else
 * `undefined`: a codec a peer does not state (an older peer, a codec without a name) never
 * mismatches. `peer` names the other side ("worker 0a1b…", "sender tcp://…"), `self` this side
 * ("this sender"), `outcome` what becomes of the connection.
 */
export function codecMismatch(
  ours: string | undefined,
  theirs: string | undefined,
  peer: string,
  self: string,
  outcome: string,
): PirateError | undefined {
  if (ours === undefined || theirs === undefined || ours === theirs) return undefined
  return new PirateError(
    "PIRATE_CODEC_MISMATCH",
    `${peer} uses the ${JSON.stringify(theirs)} codec and ${self} the ${JSON.stringify(ours)} codec: ${outcome}; give both the same 'codec' option`,
  )
}

/** msgpack helpers for protocol metadata (never user payloads). */
export function packMeta(value: unknown): Buffer {
  return packr.pack(value)
}

/**
 * msgpack with msgpackr's records: each message names the fields of a shape once, not in every
 * object of that shape (for lists of many objects of one shape: about half the encoding time and
 * a third of the decoding time of plain maps). Every message stands on its own (no state is kept
 * between messages), but only msgpackr reads it: for links between two ends of this library.
 */
export function packShapes(value: unknown): Buffer {
  return shapes.pack(value)
}

/** Reads what `packShapes` wrote; throws on malformed input. */
export function unpackShapes(frame: Buffer): unknown {
  return shapes.unpack(frame)
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
