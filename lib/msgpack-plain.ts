/**
 * The default codec's fast path for plain data: objects, arrays, strings, numbers, booleans,
 * `null` and `undefined`, written and read without msgpackr, in exactly the bytes and values
 * msgpackr (as lib/codec.ts configures it: no records, maps as objects) writes and reads.
 *
 * - `encodePlain()` writes plain objects (`constructor === Object`) and arrays
 *   (`constructor === Array`) itself, and hands any other value inside them (a Buffer, a Date, a
 *   Map, a class instance, a bigint…) to msgpackr, copying its bytes in place: msgpackr writes a
 *   nested value as it writes it alone, so the whole is msgpackr's encoding, byte for byte.
 * - `decodePlain()` reads a frame that holds exactly one value of those types, with string keys,
 *   straight from a range of the received frame (no view of it, no `DataView` added to it, as
 *   msgpackr does for every Buffer it reads). For anything else (bin, ext, 64-bit integers,
 *   non-string keys, truncated or trailing bytes, invalid UTF-8) it returns `NOT_PLAIN` and the
 *   caller asks msgpackr, which then decodes or fails as it always did.
 *
 * Why: a message's payload is encoded once in the sender and decoded once in a worker; for the
 * small objects most applications send, msgpackr's per-call set-up, its 8 KiB scratch buffers
 * (a new one every ≈ 23 payloads of 256 bytes) and the `DataView` it adds to every Buffer it
 * reads cost as much as the encoding itself.
 */

/** What `decodePlain()` returns for a frame it leaves to msgpackr. */
export const NOT_PLAIN: unique symbol = Symbol("not plain msgpack")

// -------------------------------------------------------------------------------------------
// encoding

/** Scratch buffers the encodings are views of (as msgpackr's 8 KiB ones). */
const SLAB_BYTES = 64 * 1024
/** An encoding starts in a fresh slab when less than this is left in the current one. */
const MIN_ROOM = 2048
/** Strings shorter than this (UTF-16 code units) are written in JavaScript, longer ones natively (as msgpackr). */
const SHORT_STRING = 64

/** Buffer's native UTF-8 writer (what `buf.write()` calls after checking its arguments; msgpackr calls it too). */
interface Utf8Writer {
  utf8Write(s: string, offset: number, length: number): number
}

let slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
let pos = 0
let start = 0
/** True while an encoding is under way: a getter or toJSON that encodes meanwhile goes to msgpackr. */
let busy = false
let fallback: (value: unknown) => Buffer = () => {
  throw new Error("encodePlain() used before setPlainFallback()")
}

/** Sets how values the fast path does not write are encoded (msgpackr's `pack`). */
export function setPlainFallback(pack: (value: unknown) => Buffer): void {
  fallback = pack
}

/**
 * `value` encoded as msgpackr encodes it, or `undefined` when the fast path does not take it
 * (anything but a plain object or array at the top, or an encoding already under way).
 * The result is a view of a shared scratch buffer, never written again.
 */
export function encodePlain(value: unknown): Buffer | undefined {
  if (busy || typeof value !== "object" || value === null) return undefined
  const ctor = value.constructor
  if (ctor !== Object && ctor !== Array) return undefined
  busy = true
  try {
    if (slab.length - pos < MIN_ROOM) {
      slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
      pos = 0
    }
    start = pos
    if (ctor === Array) writeArray(value as unknown[])
    else writeObject(value as Record<string, unknown>)
    const out = slab.subarray(start, pos)
    start = pos
    return out
  } catch (err) {
    pos = start
    throw err
  } finally {
    busy = false
  }
}

/** Makes room for `n` more bytes, moving the encoding so far to a larger slab if needed. */
function room(n: number): void {
  if (pos + n <= slab.length) return
  const size = Math.max(SLAB_BYTES, (pos - start + n) * 2)
  const next = Buffer.allocUnsafeSlow(size)
  slab.copy(next, 0, start, pos)
  pos -= start
  start = 0
  slab = next
}

function writeValue(value: unknown): void {
  switch (typeof value) {
    case "string":
      writeString(value)
      return
    case "number":
      writeNumber(value)
      return
    case "boolean":
      room(1)
      slab[pos++] = value ? 0xc3 : 0xc2
      return
    case "undefined":
      // msgpackr's undefined: fixext 1, type 0, data 0.
      room(3)
      slab[pos++] = 0xd4
      slab[pos++] = 0
      slab[pos++] = 0
      return
    case "object":
      if (value === null) {
        room(1)
        slab[pos++] = 0xc0
        return
      }
      if (value.constructor === Object) {
        writeObject(value as Record<string, unknown>)
        return
      }
      if (value.constructor === Array) {
        writeArray(value as unknown[])
        return
      }
      break
    case "bigint":
    case "function":
    case "symbol":
      break
  }
  // Anything else (Buffer, Date, Map, class instances, bigint, functions…): msgpackr's bytes.
  const bytes = fallback(value)
  room(bytes.length)
  pos += bytes.copy(slab, pos)
}

/** As msgpackr (no records, fixed-size map header): map16, own enumerable keys in for-in order. */
function writeObject(object: Record<string, unknown>): void {
  room(3)
  // From the start of the encoding: room() may move it to another slab meanwhile.
  const header = pos - start
  slab[pos] = 0xde
  pos += 3
  let size = 0
  for (const key in object) {
    // msgpackr's test, kept as it is (an own `hasOwnProperty` included) so that the same keys are written.
    // eslint-disable-next-line no-prototype-builtins -- msgpackr calls the object's own, if any
    if (typeof object.hasOwnProperty !== "function" || object.hasOwnProperty(key)) {
      writeString(key)
      writeValue(object[key])
      size++
    }
  }
  if (size > 0xffff) {
    // msgpackr refuses it with its own error: let it.
    pos = start + header
    fallback(object)
  }
  slab[start + header + 1] = size >> 8
  slab[start + header + 2] = size & 0xff
}

function writeArray(array: unknown[]): void {
  const n = array.length
  room(5)
  if (n < 0x10) {
    slab[pos++] = 0x90 | n
  } else if (n < 0x10000) {
    slab[pos++] = 0xdc
    slab[pos++] = n >> 8
    slab[pos++] = n & 0xff
  } else {
    slab[pos++] = 0xdd
    slab.writeUInt32BE(n, pos)
    pos += 4
  }
  for (let i = 0; i < n; i++) writeValue(array[i])
}

/** As msgpackr: the shortest header for the UTF-8 length; lone surrogates as U+FFFD. */
function writeString(s: string): void {
  const units = s.length
  // The header is sized from the code units first (UTF-8 is never shorter), then moved if the
  // bytes need a longer one.
  const headerSize = units < 0x20 ? 1 : units < 0x100 ? 2 : units < 0x10000 ? 3 : 5
  room(headerSize + units * 3)
  const at = pos + headerSize
  let length: number
  if (units < SHORT_STRING) {
    let p = at
    for (let i = 0; i < units; i++) {
      let c1 = s.charCodeAt(i)
      if (c1 < 0x80) {
        slab[p++] = c1
      } else if (c1 < 0x800) {
        slab[p++] = (c1 >> 6) | 0xc0
        slab[p++] = (c1 & 0x3f) | 0x80
      } else if ((c1 & 0xfc00) === 0xd800 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        c1 = 0x10000 + ((c1 & 0x03ff) << 10) + (s.charCodeAt(i + 1) & 0x03ff)
        i++
        slab[p++] = (c1 >> 18) | 0xf0
        slab[p++] = ((c1 >> 12) & 0x3f) | 0x80
        slab[p++] = ((c1 >> 6) & 0x3f) | 0x80
        slab[p++] = (c1 & 0x3f) | 0x80
      } else if ((c1 & 0xf800) === 0xd800) {
        slab[p++] = 0xef
        slab[p++] = 0xbf
        slab[p++] = 0xbd
      } else {
        slab[p++] = (c1 >> 12) | 0xe0
        slab[p++] = ((c1 >> 6) & 0x3f) | 0x80
        slab[p++] = (c1 & 0x3f) | 0x80
      }
    }
    length = p - at
  } else {
    length = (slab as unknown as Utf8Writer).utf8Write(s, at, slab.length - at)
  }
  if (length < 0x20) {
    slab[pos++] = 0xa0 | length
  } else if (length < 0x100) {
    if (headerSize < 2) slab.copyWithin(pos + 2, pos + 1, pos + 1 + length)
    slab[pos++] = 0xd9
    slab[pos++] = length
  } else if (length < 0x10000) {
    if (headerSize < 3) slab.copyWithin(pos + 3, pos + 2, pos + 2 + length)
    slab[pos++] = 0xda
    slab[pos++] = length >> 8
    slab[pos++] = length & 0xff
  } else {
    if (headerSize < 5) slab.copyWithin(pos + 5, pos + 3, pos + 3 + length)
    slab[pos++] = 0xdb
    slab.writeUInt32BE(length, pos)
    pos += 4
  }
  pos += length
}

/** As msgpackr (no float32): integers of up to 32 bits in the shortest form, anything else float64. */
function writeNumber(value: number): void {
  room(9)
  if (value >>> 0 === value) {
    if (value < 0x80) {
      slab[pos++] = value
    } else if (value < 0x100) {
      slab[pos++] = 0xcc
      slab[pos++] = value
    } else if (value < 0x10000) {
      slab[pos++] = 0xcd
      slab[pos++] = value >> 8
      slab[pos++] = value & 0xff
    } else {
      slab[pos++] = 0xce
      slab.writeUInt32BE(value, pos)
      pos += 4
    }
  } else if (value >> 0 === value) {
    if (value >= -0x20) {
      slab[pos++] = 0x100 + value
    } else if (value >= -0x80) {
      slab[pos++] = 0xd0
      slab[pos++] = value + 0x100
    } else if (value >= -0x8000) {
      slab[pos++] = 0xd1
      slab.writeInt16BE(value, pos)
      pos += 2
    } else {
      slab[pos++] = 0xd2
      slab.writeInt32BE(value, pos)
      pos += 4
    }
  } else {
    slab[pos++] = 0xcb
    slab.writeDoubleBE(value, pos)
    pos += 8
  }
}

// -------------------------------------------------------------------------------------------
// decoding

/** Thrown inside the decoder for anything it leaves to msgpackr (never escapes it; made once). */
const UNSUPPORTED = new Error("not plain msgpack")

/** Buffer's native UTF-8 reader (what `buf.toString("utf8", …)` calls after checking its arguments). */
interface NativeReader {
  utf8Slice(start: number, end: number): string
}

let src: Buffer = Buffer.alloc(0)
let at = 0
let end = 0
/** Elements the arrays of one frame may still claim: as msgpackr, never more than its bytes. */
let budget = 0

/** Keys (short ASCII strings) seen before, by a hash of their bytes: one string each, reused. */
const KEY_SLOTS = 4096
const keys = new Array<string | undefined>(KEY_SLOTS).fill(undefined)
const MAX_CACHED_KEY = 16

/**
 * The value in `frame[start, stop)` when that range is exactly one plain value (see the file's
 * comment), as msgpackr would decode it; `NOT_PLAIN` otherwise.
 */
export function decodePlain(frame: Buffer, start: number, stop: number): unknown {
  src = frame
  at = start
  end = stop
  budget = stop - start
  try {
    const value = read()
    return at === end ? value : NOT_PLAIN
  } catch (err) {
    // UNSUPPORTED, or a frame nested too deep for the stack: msgpackr decides.
    if (err === UNSUPPORTED || err instanceof RangeError) return NOT_PLAIN
    throw err
  } finally {
    src = EMPTY
  }
}
const EMPTY = Buffer.alloc(0)

function need(n: number): void {
  if (at + n > end) throw UNSUPPORTED
}

function read(): unknown {
  need(1)
  const t = src[at++] as number
  if (t < 0x80) return t
  if (t < 0x90) return readMap(t & 0x0f)
  if (t < 0xa0) return readArray(t & 0x0f)
  if (t < 0xc0) return readString(t & 0x1f)
  if (t >= 0xe0) return t - 0x100
  let v: number
  switch (t) {
    case 0xc0:
      return null
    case 0xc2:
      return false
    case 0xc3:
      return true
    case 0xca:
      need(4)
      v = src.readFloatBE(at)
      at += 4
      return v
    case 0xcb:
      need(8)
      v = src.readDoubleBE(at)
      at += 8
      return v
    case 0xcc:
      need(1)
      return src[at++]
    case 0xcd:
      need(2)
      v = src.readUInt16BE(at)
      at += 2
      return v
    case 0xce:
      need(4)
      v = src.readUInt32BE(at)
      at += 4
      return v
    case 0xd0:
      need(1)
      return src.readInt8(at++)
    case 0xd1:
      need(2)
      v = src.readInt16BE(at)
      at += 2
      return v
    case 0xd2:
      need(4)
      v = src.readInt32BE(at)
      at += 4
      return v
    case 0xd9:
      need(1)
      return readString(src[at++] as number)
    case 0xda:
      need(2)
      at += 2
      return readString(src.readUInt16BE(at - 2))
    case 0xdb:
      need(4)
      at += 4
      return readString(src.readUInt32BE(at - 4))
    case 0xdc:
      need(2)
      at += 2
      return readArray(src.readUInt16BE(at - 2))
    case 0xdd:
      need(4)
      at += 4
      return readArray(src.readUInt32BE(at - 4))
    case 0xde:
      need(2)
      at += 2
      return readMap(src.readUInt16BE(at - 2))
    case 0xdf:
      need(4)
      at += 4
      return readMap(src.readUInt32BE(at - 4))
    default:
      // bin, ext (undefined, timestamps…), 64-bit integers, 0xc1.
      throw UNSUPPORTED
  }
}

function readArray(n: number): unknown[] {
  // Every element takes at least one byte: a longer array is truncated (msgpackr says so).
  if (n > end - at || (budget -= n) < 0) throw UNSUPPORTED
  const out = new Array<unknown>(n)
  for (let i = 0; i < n; i++) out[i] = read()
  return out
}

function readMap(n: number): Record<string, unknown> {
  if (n > (end - at) / 2) throw UNSUPPORTED
  const out: Record<string, unknown> = {}
  for (let i = 0; i < n; i++) {
    let key = readKey()
    // As msgpackr: a "__proto__" key must not set the prototype.
    if (key === "__proto__") key = "__proto_"
    out[key] = read()
  }
  return out
}

function readKey(): string {
  need(1)
  const t = src[at++] as number
  if (t >= 0xa0 && t < 0xc0) {
    const n = t & 0x1f
    if (n <= MAX_CACHED_KEY) {
      need(n)
      const slot =
        n === 0
          ? 0
          : ((n << 5) ^ (src[at] as number) ^ ((src[at + n - 1] as number) << 3)) & (KEY_SLOTS - 1)
      const cached = keys[slot]
      if (cached !== undefined && cached.length === n && sameAscii(cached, at)) {
        at += n
        return cached
      }
      const key = readString(n)
      if (isAscii(key)) keys[slot] = key
      return key
    }
    return readString(n)
  }
  if (t === 0xd9) {
    need(1)
    return readString(src[at++] as number)
  }
  if (t === 0xda) {
    need(2)
    at += 2
    return readString(src.readUInt16BE(at - 2))
  }
  if (t === 0xdb) {
    need(4)
    at += 4
    return readString(src.readUInt32BE(at - 4))
  }
  // Other keys (numbers, nil…) are msgpackr's to turn into strings.
  throw UNSUPPORTED
}

function sameAscii(s: string, from: number): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) !== src[from + i]) return false
  return true
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
  return true
}

/** Strings this short are read in JavaScript when ASCII (a native call costs ≈ 45 ns); longer ones natively. */
const SHORT_READ = 16

function readString(n: number): string {
  need(n)
  const from = at
  at += n
  if (n < SHORT_READ) {
    const s = shortAscii(from, at)
    if (s !== undefined) return s
  }
  const s = (src as unknown as NativeReader).utf8Slice(from, at)
  // Invalid UTF-8 decodes to U+FFFD here and perhaps otherwise in msgpackr: let it decide.
  if (s.includes("\ufffd")) throw UNSUPPORTED
  return s
}

/** `src[from, to)` as a string when it is all ASCII, four characters at a time; else undefined. */
function shortAscii(from: number, to: number): string | undefined {
  let out = ""
  let i = from
  for (; i + 4 <= to; i += 4) {
    const a = src[i] as number
    const b = src[i + 1] as number
    const c = src[i + 2] as number
    const d = src[i + 3] as number
    if ((a | b | c | d) > 0x7f) return undefined
    out += String.fromCharCode(a, b, c, d)
  }
  for (; i < to; i++) {
    const a = src[i] as number
    if (a > 0x7f) return undefined
    out += String.fromCharCode(a)
  }
  return out
}
