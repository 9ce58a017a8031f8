/**
 * Envelopes and packed frames of the wire protocol (see protocol.ts, which re-exports all of it):
 * the envelope the sender puts in front of a task to match its reply, and the frames that carry a
 * batch's envelopes, bodies, replies or meta records one after the other, each with its length,
 * with their readers that make no Buffer per record.
 */
import { bodyLength, prefixOf } from "./body.js"

// ---------------------------------------------------------------------------------------------
// Envelope: what the sender puts in front of a task so it can match the reply. Opaque to workers.
//   0x50 'P' | version 0x01 | attempt uint32 BE | message id (ASCII)

const ENVELOPE_TAG = 0x50
const ENVELOPE_VERSION = 0x01
export const MAX_ID_LENGTH = 64

export interface Envelope {
  id: string
  attempt: number
}

export function encodeEnvelope(id: string, attempt: number): Buffer {
  const buf = Buffer.allocUnsafe(6 + id.length)
  buf[0] = ENVELOPE_TAG
  buf[1] = ENVELOPE_VERSION
  buf.writeUInt32BE(attempt >>> 0, 2)
  buf.write(id, 6, "latin1")
  return buf
}

/**
 * Packs the envelopes of a batch (TASKS, ACKS) into one frame: each as a length byte followed by
 * the envelope. One frame instead of one per message halves the frames a batch costs.
 */
export function packEnvelopes(envelopes: readonly Buffer[]): Buffer {
  return packRecords(envelopes, 1)
}

/**
 * {@link packEnvelopes} of envelopes that are records of packed envelopes frames, without a view
 * of each: envelope i is the record of `frames[i]` whose length byte is at `at[i]`, or all of
 * `frames[i]` when `at[i]` is -1.
 */
export function packEnvelopeRecords(frames: readonly Buffer[], at: readonly number[]): Buffer {
  let size = 0
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i] as Buffer
    const a = at[i] as number
    size += 1 + (a < 0 ? frame.length : (frame[a] as number))
  }
  const out = Buffer.allocUnsafe(size)
  let pos = 0
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i] as Buffer
    const a = at[i] as number
    if (a < 0) {
      if (frame.length > 255)
        throw new RangeError(`an envelope is at most 255 bytes, got ${frame.length}`)
      out[pos] = frame.length
      pos += 1 + frame.copy(out, pos + 1)
      continue
    }
    // A record is a few dozen bytes: copied here, byte by byte, rather than through a view of it.
    const end = a + 1 + (frame[a] as number)
    for (let j = a; j < end; j++) out[pos++] = frame[j] as number
  }
  return out
}

/** Packs our own envelopes (id, attempt) for TASKS, without a Buffer per envelope. */
export function packTaskEnvelopes(tasks: readonly Envelope[]): Buffer {
  let size = 0
  for (const t of tasks) size += 7 + t.id.length
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (const t of tasks) {
    out[at] = 6 + t.id.length
    out[at + 1] = ENVELOPE_TAG
    out[at + 2] = ENVELOPE_VERSION
    out.writeUInt32BE(t.attempt >>> 0, at + 3)
    at += 7 + out.write(t.id, at + 7, "latin1")
  }
  return out
}

/**
 * Splits a packed envelopes frame into its envelopes (views into the frame). Returns `null` when
 * it holds no record, a malformed one, or not exactly `count` of them when `count` is given.
 */
export function unpackEnvelopes(frame: Buffer | undefined, count = Infinity): Buffer[] | null {
  return unpackRecords(frame, count, 1)
}

/**
 * Most bytes a packed bodies or replies frame carries: a batch is cut before a message that
 * would take it past this, so one large message never drags a batch of small ones with it. A
 * single message larger than this travels alone.
 */
export const PACK_BYTES = 1024 * 1024

/**
 * Packs the bodies of a batch (TASKS) or its replies (ACKS) into one frame: each as a 4-byte
 * big-endian length followed by its bytes. One frame per batch instead of one per message: a
 * ZeroMQ frame costs the receiving process more than copying a few hundred bytes does.
 */
export function packBodies(bodies: readonly Buffer[]): Buffer {
  return packRecords(bodies, 4)
}

/**
 * Splits a packed bodies frame into exactly `count` bodies (views into the frame), or returns
 * `null` when it does not hold exactly that many.
 */
export function unpackBodies(frame: Buffer | undefined, count: number): Buffer[] | null {
  return unpackRecords(frame, count, 4)
}

/**
 * Length-prefixed records one after the other. `width` 1: envelopes (1 to 255 bytes each);
 * `width` 4: bodies (a 4-byte big-endian length, empty bodies allowed).
 */
export function packRecords(records: readonly Buffer[], width: 1 | 4): Buffer {
  let size = 0
  for (const r of records) size += width + bodyLength(r)
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (const r of records) {
    if (width === 1) {
      if (r.length > 255) throw new RangeError(`an envelope is at most 255 bytes, got ${r.length}`)
      out[at] = r.length
      at += 1 + r.copy(out, at + 1)
      continue
    }
    // A split body (lib/body.ts) is written whole: its prefix, then the rest.
    const prefix = prefixOf(r)
    out.writeUInt32BE(r.length + (prefix?.length ?? 0), at)
    at += width
    if (prefix !== undefined) at += prefix.copy(out, at)
    at += r.copy(out, at)
  }
  return out
}

/** The records of a frame packed by {@link packRecords}; `null` unless it splits cleanly into `count`. */
function unpackRecords(frame: Buffer | undefined, count: number, width: 1 | 4): Buffer[] | null {
  const bounds = recordBounds(frame, count, width)
  if (!frame || !bounds) return null
  const out: Buffer[] = []
  for (let i = 0; i < bounds.length; i += 2) out.push(frame.subarray(bounds[i], bounds[i + 1]))
  return out
}

/**
 * {@link decodeEnvelope} of the envelope `frame[start, end)` (a record of a packed envelopes
 * frame), without a view of it.
 */
export function decodeEnvelopeAt(frame: Buffer, start: number, end: number): Envelope | null {
  if (!isEnvelopeAt(frame, start, end)) return null
  return { attempt: frame.readUInt32BE(start + 2), id: frame.toString("latin1", start + 6, end) }
}

/** Returns `null` for anything that is not one of our envelopes. */
export function decodeEnvelope(frame: Buffer | undefined): Envelope | null {
  return frame ? decodeEnvelopeAt(frame, 0, frame.length) : null
}

/** True when `frame[start, end)` is one of our envelopes: tag, version, attempt and an id. */
function isEnvelopeAt(frame: Buffer, start: number, end: number): boolean {
  const length = end - start
  return (
    length >= 7 &&
    length <= 6 + MAX_ID_LENGTH &&
    frame[start] === ENVELOPE_TAG &&
    frame[start + 1] === ENVELOPE_VERSION
  )
}

/**
 * The bounds of the records of a packed frame, `[start, end, start, end, …]` (the bytes of each
 * record, without its length), or `null` unless it splits cleanly into `count` (any number for
 * `Infinity`), each envelope non-empty: `width` 1 for
 * packed envelopes, 4 for packed bodies. Reads a TASKS or ACKS without a Buffer per record.
 */
export function recordBounds(
  frame: Buffer | undefined,
  count: number,
  width: 1 | 4,
): number[] | null {
  if (!frame || count < 1 || (width === 1 && frame.length === 0)) return null
  const out: number[] = []
  let at = 0
  while (at < frame.length) {
    if (at + width > frame.length || out.length === 2 * count) return null
    const length = width === 1 ? (frame[at] as number) : frame.readUInt32BE(at)
    const end = at + width + length
    if ((width === 1 && length === 0) || end > frame.length) return null
    out.push(at + width, end)
    at = end
  }
  return count === Infinity || out.length === 2 * count ? out : null
}

/**
 * Reads the acks of an ACKS message (`[0x12, envelopes, replies]`) without a Buffer per record:
 * calls `each` with the id and attempt of each envelope (`id` null for one that is not ours) and
 * the bounds of its reply in `replies`. Returns false, calling nothing, when the frames do not
 * split into the same number of records (as {@link unpackEnvelopes} and {@link unpackBodies}).
 */
export function readAcks(
  envelopes: Buffer | undefined,
  replies: Buffer | undefined,
  each: (id: string | null, attempt: number, start: number, end: number) => void,
): boolean {
  const env = recordBounds(envelopes, Infinity, 1)
  const rep = env && recordBounds(replies, env.length / 2, 4)
  if (!envelopes || !env || !rep) return false
  for (let i = 0; i < env.length; i += 2) {
    const start = env[i] as number
    const end = env[i + 1] as number
    // Without decodeEnvelopeAt()'s object per ack.
    if (isEnvelopeAt(envelopes, start, end))
      each(
        envelopes.toString("latin1", start + 6, end),
        envelopes.readUInt32BE(start + 2),
        rep[i] as number,
        rep[i + 1] as number,
      )
    else each(null, 0, rep[i] as number, rep[i + 1] as number)
  }
  return true
}
