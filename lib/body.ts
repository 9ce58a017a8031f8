/**
 * Bodies kept in two parts: a short prefix and the bytes after it. The default codec's body of a
 * large byte array is a 5-byte msgpack bin header and the array itself; joined, it would be a
 * copy of the whole array in a fresh allocation (a page fault per 4 KiB of it). Kept apart, the
 * array goes from `send()` to the journal's segment and to the socket as it is, and a worker
 * hands the received frame to its handler.
 *
 * A split body is a Buffer view of the bytes after the prefix that remembers its prefix here:
 * only the code that writes bodies (the wire, the journal) and the codec's decoding look it up.
 * Everything else must see whole bodies: `joinBody()`.
 */

const prefixes = new WeakMap<Buffer, Buffer>()

/** Set on a journal that writes split bodies whole itself (`LevelJournal`); others get them joined. */
export const TAKES_SPLIT_BODIES = Symbol("zeromq-pirate.takesSplitBodies")

/** Bodies shorter than this are never split (so a lookup is never needed for them). */
export const SPLIT_BYTES = 64 * 1024

/** A body of `prefix` then `rest`, without copying `rest` (a new view of it). */
export function splitBody(prefix: Buffer, rest: Uint8Array): Buffer {
  const view = Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength)
  prefixes.set(view, prefix)
  return view
}

/** The prefix of a split body; undefined for a whole one. */
export function prefixOf(body: Buffer): Buffer | undefined {
  return body.length >= SPLIT_BYTES ? prefixes.get(body) : undefined
}

/**
 * `body` itself, or a copy of it when it is a small view of a larger buffer (a codec's scratch
 * buffer, a page of the journal), which it would keep alive as long as it is kept. A split body
 * is its producer's own already.
 */
export function ownBody(body: Buffer): Buffer {
  return 2 * body.length < body.buffer.byteLength && prefixOf(body) === undefined
    ? Buffer.from(body)
    : body
}

/** The frames (or writes) a body takes: the prefix and the rest, or the body alone. */
export function bodyParts(body: Buffer): Buffer[] {
  const prefix = prefixOf(body)
  return prefix ? [prefix, body] : [body]
}

/** The length of the whole body. */
export function bodyLength(body: Buffer): number {
  return body.length + (prefixOf(body)?.length ?? 0)
}

/** The whole body: a split one joined (a copy), any other as it is. */
export function joinBody(body: Buffer): Buffer {
  const prefix = prefixOf(body)
  return prefix ? Buffer.concat([prefix, body]) : body
}
