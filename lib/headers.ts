/**
 * Named queues and message headers: the checks of `send()`'s `queue` and `headers` options, and
 * the compact binary form the journal stores headers in.
 */
import { describe } from "./validate.js"

/** The queue of a message sent without `queue`, and the queue of a worker without `queues`. */
export const DEFAULT_QUEUE = "default"
/** The most utf-8 bytes of a queue name (its length is one byte on disk and on the wire). */
export const MAX_QUEUE_BYTES = 255
/** The most entries of a message's headers. */
export const MAX_HEADERS = 64
/** The most utf-8 bytes of a header's name. */
export const MAX_HEADER_NAME_BYTES = 256
/** The most bytes of a message's headers in all (names and values, as stored). */
export const MAX_HEADERS_BYTES = 64 * 1024

/** True when `s` survives utf-8 (no lone surrogate, which utf-8 cannot carry). */
function wellFormed(s: string): boolean {
  return (s as string & { isWellFormed(): boolean }).isWellFormed()
}

/**
 * Checks a queue name: a non-empty string of at most 255 utf-8 bytes, well-formed unicode.
 *
 * @throws TypeError/RangeError naming the option
 */
export function checkQueueName(name: unknown, option = "queue"): string {
  if (typeof name !== "string" || name === "")
    throw new TypeError(`'${option}' must be a non-empty string, got ${describe(name)}`)
  const bytes = Buffer.byteLength(name)
  if (bytes > MAX_QUEUE_BYTES)
    throw new RangeError(`'${option}' must be at most ${MAX_QUEUE_BYTES} utf-8 bytes, got ${bytes}`)
  if (!wellFormed(name))
    throw new RangeError(`'${option}' must be well-formed unicode (no lone surrogate)`)
  return name
}

/**
 * Checks a message's headers and returns a frozen copy of them (the caller may change its own
 * object afterwards): a plain object of at most 64 entries, each name a non-empty string of at
 * most 256 utf-8 bytes and each value a string, at most 64 KiB in all, well-formed unicode.
 *
 * @throws TypeError/RangeError naming the option
 */
export function checkHeaders(
  headers: unknown,
  option = "headers",
): Readonly<Record<string, string>> {
  if (typeof headers !== "object" || headers === null || Array.isArray(headers))
    throw new TypeError(`'${option}' must be an object of strings, got ${describe(headers)}`)
  const proto: unknown = Object.getPrototypeOf(headers)
  if (proto !== Object.prototype && proto !== null)
    throw new TypeError(`'${option}' must be a plain object of strings, got ${describe(headers)}`)
  const out: Record<string, string> = {}
  let count = 0
  let bytes = 0
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (++count > MAX_HEADERS)
      throw new RangeError(`'${option}' may have at most ${MAX_HEADERS} entries`)
    if (name === "") throw new TypeError(`'${option}' must not have an empty name`)
    if (typeof value !== "string")
      throw new TypeError(`'${option}.${name}' must be a string, got ${describe(value)}`)
    const nameBytes = Buffer.byteLength(name)
    if (nameBytes > MAX_HEADER_NAME_BYTES)
      throw new RangeError(
        `a name in '${option}' must be at most ${MAX_HEADER_NAME_BYTES} utf-8 bytes, got ${nameBytes}`,
      )
    if (!wellFormed(name) || !wellFormed(value))
      throw new RangeError(`'${option}.${name}' must be well-formed unicode (no lone surrogate)`)
    bytes += 6 + nameBytes + Buffer.byteLength(value)
    if (bytes > MAX_HEADERS_BYTES)
      throw new RangeError(`'${option}' must be at most ${MAX_HEADERS_BYTES} bytes in all`)
    out[name] = value
  }
  const checked = Object.freeze(out)
  CHECKED.add(checked)
  return checked
}

/** Headers `checkHeaders()` returned (frozen): checked once, not again by the journal. */
const CHECKED = new WeakSet<object>()

/** Checks headers unless `checkHeaders()` made them; see it for the rules. */
export function assertHeaders(headers: unknown, option = "headers"): void {
  if (typeof headers !== "object" || headers === null || !CHECKED.has(headers))
    checkHeaders(headers, option)
}

/**
 * Headers received from a peer (a PPX/2 meta record, an LPX request), decoded by msgpack (whose
 * strings are always well-formed): a plain object of at most 64 string values, frozen in place.
 * Undefined when they are not that.
 */
export function receivedHeaders(value: unknown): Readonly<Record<string, string>> | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return undefined
  let count = 0
  for (const name in value) {
    if (++count > MAX_HEADERS || name === "") return undefined
    if (typeof (value as Record<string, unknown>)[name] !== "string") return undefined
  }
  return Object.freeze(value as Record<string, string>)
}

// Stored form: [count u16] then per entry [nameLength u16][name utf8][valueLength u32][value utf8],
// little-endian. Written straight into the journal's buffer (no codec, no buffer of its own).

/** `headers` in stored form. */
export function storedHeaders(headers: Readonly<Record<string, string>>): Buffer {
  const buf = Buffer.allocUnsafe(storedHeadersSize(headers))
  writeStoredHeaders(buf, headers, 0)
  return buf
}

/** The bytes of `headers` in stored form. */
export function storedHeadersSize(headers: Readonly<Record<string, string>>): number {
  let size = 2
  for (const name in headers)
    size += 6 + Buffer.byteLength(name) + Buffer.byteLength(headers[name] as string)
  return size
}

/** Writes `headers` in stored form at `off`; returns the offset after them. */
export function writeStoredHeaders(
  buf: Buffer,
  headers: Readonly<Record<string, string>>,
  off: number,
): number {
  const countAt = off
  let count = 0
  off += 2
  for (const name in headers) {
    const n = writeUtf8(buf, name, off + 2)
    buf.writeUInt16LE(n, off)
    off += 2 + n
    const v = writeUtf8(buf, headers[name] as string, off + 4)
    buf.writeUInt32LE(v, off)
    off += 4 + v
    count++
  }
  buf.writeUInt16LE(count, countAt)
  return off
}

/**
 * Writes `s` in utf-8 at `off` (room for it is the caller's); returns its bytes. Short ASCII
 * strings, most names and values, are copied byte by byte: cheaper than a call into `buf.write`.
 */
function writeUtf8(buf: Buffer, s: string, off: number): number {
  const length = s.length
  if (length <= 64) {
    let i = 0
    for (; i < length; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) break
      buf[off + i] = c
    }
    if (i === length) return length
  }
  return buf.write(s, off, "utf8")
}

/**
 * Reads headers in stored form from `buf[off, end)`: a frozen object, or undefined when the bytes
 * are not exactly that.
 */
export function readStoredHeaders(
  buf: Buffer,
  off: number,
  end: number,
): Readonly<Record<string, string>> | undefined {
  if (end - off < 2) return undefined
  const count = buf.readUInt16LE(off)
  off += 2
  const out: Record<string, string> = {}
  for (let i = 0; i < count; i++) {
    if (off + 2 > end) return undefined
    const nameEnd = off + 2 + buf.readUInt16LE(off)
    if (nameEnd + 4 > end) return undefined
    const valueEnd = nameEnd + 4 + buf.readUInt32LE(nameEnd)
    if (valueEnd > end) return undefined
    out[buf.toString("utf8", off + 2, nameEnd)] = buf.toString("utf8", nameEnd + 4, valueEnd)
    off = valueEnd
  }
  return off === end ? Object.freeze(out) : undefined
}
