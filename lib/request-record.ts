/**
 * How a `ParanoidPirateQueue` journals a client's request: the body together with the Lazy Pirate
 * request id, so that a restarted queue can join a client's retry to the recovered copy.
 *
 * ```
 * c1 "LPQ" 01 | id length (1 byte, 0 for a plain request) | request id (Latin-1) | body
 * ```
 *
 * The first byte, 0xc1, is the one byte msgpack never uses, so no msgpack payload reads as a
 * record. A journal entry that is not a record (a dead letter replayed with `pirate journal
 * replay`, which keeps only the body, or a journal written before records existed) is a body
 * with no request id.
 */
import { MAX_ID_LENGTH } from "./protocol.js"

const RECORD_MAGIC = Buffer.from([0xc1, 0x4c, 0x50, 0x51, 0x01]) // 0xc1 "LPQ" 1
const HEADER = RECORD_MAGIC.length + 1

/** A request as journaled by a queue: its LPX/1 request id (none for a plain request) and body. */
export interface RequestRecord {
  requestId: string | undefined
  body: Buffer
}

export function encodeRequestRecord(requestId: string | null | undefined, body: Buffer): Buffer {
  const id = Buffer.from(requestId ?? "", "latin1")
  if (id.length > MAX_ID_LENGTH) throw new RangeError(`request id longer than ${MAX_ID_LENGTH}`)
  return Buffer.concat([RECORD_MAGIC, Buffer.from([id.length]), id, body])
}

/** The record in a journaled payload; `null` when the payload is a bare body. */
export function decodeRequestRecord(payload: Buffer): RequestRecord | null {
  if (payload.length < HEADER || !payload.subarray(0, RECORD_MAGIC.length).equals(RECORD_MAGIC))
    return null
  const length = payload[RECORD_MAGIC.length] as number
  if (length > MAX_ID_LENGTH || HEADER + length > payload.length) return null
  return {
    requestId: length === 0 ? undefined : payload.toString("latin1", HEADER, HEADER + length),
    body: payload.subarray(HEADER + length),
  }
}
