/**
 * Wire frames. Paranoid Pirate Protocol (rfc 6/PPP) plus the PPX/1 and PPX/2 extension; the Lazy
 * Pirate framing (LPX/1) is in lpx.ts, envelopes and packed frames in protocol-records.ts, both
 * re-exported here. `docs/protocol.md` is the specification; these files are its implementation.
 *
 * PPP (what plain Guide peers speak):
 *   worker → queue:  READY [0x01] | HEARTBEAT [0x02] | reply [envelope, "", body]
 *   queue → worker:  HEARTBEAT [0x02] | request [envelope, "", body]
 *
 * PPX/1 and PPX/2 (only after the worker announced it in its READY frame and the sender answered
 * WELCOME with the lower of both versions):
 *   READY    w→s  single frame 0x01 "PPX" version msgpack{credit, heartbeatInterval, liveness,
 *                 codec?, queues? (PPX/2)}
 *   WELCOME  s→w  [0x10, msgpack{version, heartbeatInterval, liveness, codec?}]
 *   TASKS    s→w  [0x11, envelopes, bodies]     (envelopes: n × [length u8][envelope])
 *                 or, PPX/2, [0x11, envelopes, bodies, metas] (metas: n × [length u32][msgpack
 *                 {queue?, headers?}], an empty record for a task with neither)
 *   ACKS     w→s  [0x12, envelopes, replies]    (bodies, replies: n × [length u32 BE][bytes])
 *   NACK     w→s  [0x13, envelope, msgpack{error, reject?, delay?}]
 *   EXTEND   w→s  [0x14, envelope, …]          (the job is still running: renew its ack deadline)
 *   GOODBYE  both [0x15]                        (closing: send me nothing new)
 *   STARTED  w→s  [0x16, envelopes]             (these tasks' handlers started; only when both
 *                                               said `started: true` in READY and WELCOME)
 *   TASK     s→w  [0x17, envelope, body]        (one large task, its body frame sent as is; only
 *                                               to a worker that said `single: true` in READY;
 *                                               or [0x17, envelope, prefix, rest]: a split body)
 *   ACK      w→s  [0x18, envelope, reply]       (one large reply as its own frame; only when the
 *                                               WELCOME said `single: true`)
 *   TASKM    s→w  [0x19, envelope, meta, body] or [0x19, envelope, meta, prefix, rest] (PPX/2: a
 *                                               TASK with its meta record)
 *   PAIR     s→w  [0x1a, msgpack{state}]        (a sender of a pair says its state; only to a
 *                                               worker that said `pair: true` in READY)
 *   VOTE     w→s  [0x1b]                        (a worker that has had no live session with an
 *                                               active sender for a liveness window; see
 *                                               docs/pair.md section 5)
 */
import { PACK_BYTES, packRecords } from "./protocol-records.js"
import { MAX_CODEC_NAME, packMeta, unpackMeta } from "./codec.js"
import { PirateError, errorMessage } from "./errors.js"
import { DEFAULT_QUEUE, checkQueueName, receivedHeaders } from "./headers.js"
import type { PairStateName } from "./pair/pair-state.js"
import { describe, stripUndefined } from "./validate.js"

export const PPP = Object.freeze({ READY: 0x01, HEARTBEAT: 0x02 } as const)

export const PPX = Object.freeze({
  /** The highest version this release speaks; a peer answers with the lower of both. */
  VERSION: 2,
  WELCOME: 0x10,
  TASKS: 0x11,
  ACKS: 0x12,
  NACK: 0x13,
  EXTEND: 0x14,
  GOODBYE: 0x15,
  STARTED: 0x16,
  TASK: 0x17,
  ACK: 0x18,
  TASKM: 0x19,
  PAIR: 0x1a,
  VOTE: 0x1b,
} as const)

const PPX_MAGIC = Buffer.from("PPX")
const EMPTY = Buffer.alloc(0)

export const FRAME_READY = Buffer.from([PPP.READY])
export const FRAME_HEARTBEAT = Buffer.from([PPP.HEARTBEAT])
export const FRAME_EMPTY = EMPTY
export const FRAME_TASKS = Buffer.from([PPX.TASKS])
export const FRAME_ACKS = Buffer.from([PPX.ACKS])
export const FRAME_NACK = Buffer.from([PPX.NACK])
export const FRAME_EXTEND = Buffer.from([PPX.EXTEND])
export const FRAME_GOODBYE = Buffer.from([PPX.GOODBYE])
export const FRAME_STARTED = Buffer.from([PPX.STARTED])
export const FRAME_TASK = Buffer.from([PPX.TASK])
export const FRAME_ACK = Buffer.from([PPX.ACK])
export const FRAME_TASKM = Buffer.from([PPX.TASKM])
export const FRAME_PAIR = Buffer.from([PPX.PAIR])
export const FRAME_VOTE = Buffer.from([PPX.VOTE])

/**
 * A body (or reply) of at least this many bytes goes alone, as its own frame (TASK, ACK), to a
 * peer that takes those: ZeroMQ sends a frame of a Node Buffer without copying it, whereas
 * packing it (TASKS, ACKS) copies every byte once more.
 */
export const SINGLE_BYTES = 64 * 1024

/** What an extension worker announces in its READY frame. */
export interface Hello {
  /** The highest PPX version the worker speaks (the READY frame's version byte). */
  version?: number | undefined
  credit: number
  heartbeatInterval: number
  liveness: number
  /** The largest frame the worker takes (its `maxMessageSize`); no limit when absent. */
  maxMessageSize?: number | undefined
  /** The worker can tell when a task's handler starts (STARTED), if the queue asks. */
  started?: true | undefined
  /** The worker takes TASK (one task, its body as its own frame). */
  single?: true | undefined
  /** The name of the worker's payload codec; unknown (never a mismatch) when absent. */
  codec?: string | undefined
  /**
   * PPX/2: the named queues the worker takes tasks of (1 to 256 distinct names); `["default"]`
   * when absent.
   */
  queues?: string[] | undefined
  /** The worker knows sender pairs: it takes PAIR and may send VOTE (docs/pair.md section 5). */
  pair?: true | undefined
}

/** The most queues a worker may announce in READY. */
export const MAX_WORKER_QUEUES = 256

/** What the sender answers. */
export interface Welcome {
  version: number
  heartbeatInterval: number
  liveness: number
  /** The largest frame the sender takes (its `maxMessageSize`); no limit when absent. */
  maxMessageSize?: number | undefined
  /**
   * The sender's identity, stable across its restarts (kept with its journal): 1 to 64 printable
   * ASCII characters. Message ids are unique per sender, so a worker that remembers completed
   * messages keys them on this and the message id.
   */
  sender?: string | undefined
  /** Send STARTED when a task's handler starts (the queue has ack deadlines). */
  started?: true | undefined
  /** The sender takes ACK (one reply as its own frame); only to a worker that announced `single`. */
  single?: true | undefined
  /** The name of the sender's payload codec; unknown (never a mismatch) when absent. */
  codec?: string | undefined
  /**
   * The state of a sender that is one of a pair (only to a worker that announced `pair`); a
   * sender not in a pair leaves it out.
   */
  pair?: PairStateName | undefined
}

/** Largest `maxMessageSize` a READY or WELCOME may announce: 2^53 − 1. */
const MAX_ANNOUNCED_SIZE = Number.MAX_SAFE_INTEGER

export interface NackInfo {
  error: string
  /** Do not retry: dead-letter at once (e.g. the payload cannot be decoded). */
  reject?: boolean
  /** Delay before the retry (ms); the sender's backoff applies when absent. */
  delay?: number
}

export function encodeReady(hello?: Hello): Buffer {
  if (!hello) return FRAME_READY
  const { version, ...meta } = hello
  return Buffer.concat([
    FRAME_READY,
    PPX_MAGIC,
    Buffer.from([version ?? PPX.VERSION]),
    // msgpack has no `undefined`: absent keys are left out rather than sent as nil.
    packMeta(stripUndefined(meta)),
  ])
}

/**
 * The largest packed bodies (or replies) frame to send a peer that announced `maxMessageSize`:
 * {@link PACK_BYTES}, or less when the peer takes less.
 */
export function packLimit(maxMessageSize: number | undefined): number {
  return maxMessageSize === undefined ? PACK_BYTES : Math.min(PACK_BYTES, maxMessageSize)
}

/**
 * Reads a READY frame: `null` for a plain PPP worker, the announced settings for a PPX one.
 * Throws `PIRATE_PROTOCOL` for a READY frame that claims PPX but is damaged.
 */
export function decodeReady(frame: Buffer): Hello | null {
  if (frame.length === 1) return null
  if (frame.length < 5 || !frame.subarray(1, 4).equals(PPX_MAGIC)) {
    throw new PirateError("PIRATE_PROTOCOL", "READY frame with unknown trailing bytes")
  }
  // The worker announces the highest PPX version it speaks; the sender answers with the lower of
  // that and its own, so only version 0 is invalid.
  if (frame[4] === 0) throw new PirateError("PIRATE_PROTOCOL", "READY announces PPX version 0")
  const meta = unpackMeta(frame.subarray(5))
  if (typeof meta !== "object" || meta === null)
    throw new PirateError("PIRATE_PROTOCOL", "READY metadata is not a map")
  const m = meta as Record<string, unknown>
  const credit = intIn(m["credit"], 1, 65_536)
  const heartbeatInterval = intIn(m["heartbeatInterval"], 1, 3_600_000)
  const liveness = intIn(m["liveness"], 1, 1000)
  if (credit === undefined || heartbeatInterval === undefined || liveness === undefined) {
    throw new PirateError(
      "PIRATE_PROTOCOL",
      "READY metadata lacks credit, heartbeatInterval or liveness",
    )
  }
  const hello: Hello = { version: frame[4], credit, heartbeatInterval, liveness }
  const maxMessageSize = announcedSize(m, "READY")
  if (maxMessageSize !== undefined) hello.maxMessageSize = maxMessageSize
  if (m["started"] === true) hello.started = true
  if (m["single"] === true) hello.single = true
  const codec = announcedCodec(m, "READY")
  if (codec !== undefined) hello.codec = codec
  const queues = announcedQueues(m["queues"])
  if (queues !== undefined) hello.queues = queues
  if (m["pair"] === true) hello.pair = true
  return hello
}

/** The optional `queues` key of READY: absent, or 1 to 256 distinct queue names. */
function announcedQueues(raw: unknown): string[] | undefined {
  if (raw === undefined) return undefined
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_WORKER_QUEUES)
    throw new PirateError(
      "PIRATE_PROTOCOL",
      `READY announces queues that are not a list of 1 to ${MAX_WORKER_QUEUES} names`,
    )
  const names = new Set<string>()
  for (const q of raw) {
    try {
      names.add(checkQueueName(q, "queues"))
    } catch (err) {
      throw new PirateError(
        "PIRATE_PROTOCOL",
        `READY announces an invalid queue name: ${errorMessage(err)}`,
      )
    }
  }
  return [...names]
}

/** What goes with a task to a PPX/2 worker besides its body. */
export interface TaskMeta {
  /** Its named queue; `"default"` when absent. */
  queue?: string | undefined
  headers?: Readonly<Record<string, string>> | undefined
}

/** The meta record of a task: empty when it has neither a queue other than "default" nor headers. */
export function encodeTaskMeta(queue: string, headers: TaskMeta["headers"]): Buffer {
  if (queue === DEFAULT_QUEUE && headers === undefined) return EMPTY
  return packMeta(
    headers === undefined ? { queue } : queue === DEFAULT_QUEUE ? { headers } : { queue, headers },
  )
}

/**
 * Reads a task's meta record `frame[start, end)`: `{}` for an empty one, `null` when it is not a
 * map with a valid `queue` and `headers` of strings.
 */
export function decodeTaskMeta(frame: Buffer, start: number, end: number): TaskMeta | null {
  if (start === end) return {}
  let meta: unknown
  try {
    meta = unpackMeta(frame.subarray(start, end))
  } catch {
    return null
  }
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) return null
  // A plain map only (msgpackr decodes the reserved byte 0xc1 to an object of its own class).
  const proto: unknown = Object.getPrototypeOf(meta)
  if (proto !== Object.prototype && proto !== null) return null
  const m = meta as Record<string, unknown>
  const out: TaskMeta = {}
  try {
    if (m["queue"] !== undefined) out.queue = checkQueueName(m["queue"])
    if (m["headers"] !== undefined) {
      const headers = receivedHeaders(m["headers"])
      if (headers === undefined) return null
      out.headers = headers
    }
  } catch {
    return null
  }
  return out
}

/** Packs the meta records of a TASKS batch (see {@link packBodies}): the frame after its bodies. */
export function packMetas(metas: readonly Buffer[]): Buffer {
  return packRecords(metas, 4)
}

/** The optional `codec` key: absent, or a string of 1 to 64 characters. */
function announcedCodec(m: Record<string, unknown>, what: string): string | undefined {
  const codec = m["codec"]
  if (codec === undefined) return undefined
  if (typeof codec !== "string" || codec.length === 0 || codec.length > MAX_CODEC_NAME)
    throw new PirateError("PIRATE_PROTOCOL", `${what} announces an invalid codec name`)
  return codec
}

/** The optional `maxMessageSize` key: absent, or an integer from 1 to 2^53 − 1. */
function announcedSize(m: Record<string, unknown>, what: string): number | undefined {
  const raw = m["maxMessageSize"]
  if (raw === undefined) return undefined
  const size = intIn(raw, 1, MAX_ANNOUNCED_SIZE)
  if (size === undefined)
    throw new PirateError("PIRATE_PROTOCOL", `${what} announces an invalid maxMessageSize`)
  return size
}

/** A sender id: 1 to 64 printable ASCII characters (no space). */
const SENDER = /^[\x21-\x7e]{1,64}$/

export function encodeWelcome(w: Welcome): Buffer[] {
  return [Buffer.from([PPX.WELCOME]), packMeta(stripUndefined(w))]
}

export function decodeWelcome(frame: Buffer | undefined): Welcome {
  const meta = frame ? unpackMeta(frame) : undefined
  if (typeof meta !== "object" || meta === null)
    throw new PirateError("PIRATE_PROTOCOL", "WELCOME metadata is not a map")
  const m = meta as Record<string, unknown>
  const version = intIn(m["version"], 1, 255)
  const heartbeatInterval = intIn(m["heartbeatInterval"], 1, 3_600_000)
  const liveness = intIn(m["liveness"], 1, 1000)
  if (version === undefined || heartbeatInterval === undefined || liveness === undefined) {
    throw new PirateError(
      "PIRATE_PROTOCOL",
      "WELCOME metadata lacks version, heartbeatInterval or liveness",
    )
  }
  const welcome: Welcome = { version, heartbeatInterval, liveness }
  const maxMessageSize = announcedSize(m, "WELCOME")
  if (maxMessageSize !== undefined) welcome.maxMessageSize = maxMessageSize
  const sender = m["sender"]
  if (sender !== undefined) {
    if (typeof sender !== "string" || !SENDER.test(sender))
      throw new PirateError("PIRATE_PROTOCOL", "WELCOME announces an invalid sender id")
    welcome.sender = sender
  }
  if (m["started"] === true) welcome.started = true
  if (m["single"] === true) welcome.single = true
  const codec = announcedCodec(m, "WELCOME")
  if (codec !== undefined) welcome.codec = codec
  if (m["pair"] !== undefined) welcome.pair = pairState(m["pair"], "WELCOME")
  return welcome
}

const PAIR_STATES: readonly PairStateName[] = ["primary", "backup", "active", "passive"]

/** A pair state read from a peer: one of the four names, else `PIRATE_PROTOCOL`. */
function pairState(raw: unknown, what: string): PairStateName {
  if (typeof raw !== "string" || !PAIR_STATES.includes(raw as PairStateName))
    throw new PirateError("PIRATE_PROTOCOL", `${what} announces an invalid pair state`)
  return raw as PairStateName
}

/**
 * PAIR `[0x1a, msgpack{state}]`: a sender of a pair tells a worker that announced `pair` its
 * state (on each change).
 * @throws TypeError for a state that is not one of the four
 */
export function encodePair(state: PairStateName): Buffer[] {
  if (!PAIR_STATES.includes(state))
    throw new TypeError(`'state' must be one of ${PAIR_STATES.join(", ")}, got ${describe(state)}`)
  return [FRAME_PAIR, packMeta({ state })]
}

/**
 * Reads the frame after PAIR's command byte: the sender's state.
 * @throws PirateError `PIRATE_PROTOCOL` when it is not a map with a valid `state`.
 */
export function decodePair(frame: Buffer | undefined): PairStateName {
  const meta = frame ? unpackMeta(frame) : undefined
  if (typeof meta !== "object" || meta === null || Array.isArray(meta))
    throw new PirateError("PIRATE_PROTOCOL", "PAIR metadata is not a map")
  return pairState((meta as Record<string, unknown>)["state"], "PAIR")
}

export function encodeNack(envelope: Buffer, info: NackInfo): Buffer[] {
  return [FRAME_NACK, envelope, packMeta(info)]
}

export function decodeNack(frame: Buffer | undefined): NackInfo {
  const meta = frame ? unpackMeta(frame) : undefined
  if (typeof meta !== "object" || meta === null)
    throw new PirateError("PIRATE_PROTOCOL", "NACK metadata is not a map")
  const m = meta as Record<string, unknown>
  const error = typeof m["error"] === "string" ? m["error"] : "nacked"
  const info: NackInfo = { error }
  if (m["reject"] === true) info.reject = true
  const delay = intIn(m["delay"], 0, 86_400_000)
  if (delay !== undefined) info.delay = delay
  return info
}

/**
 * The envelope of a TASK or ACK (`[command, envelope, body]`, the frames after the command):
 * `null` unless there are exactly those two frames and the envelope has 1 to 255 bytes, as in a
 * packed envelopes frame.
 */
export function singleEnvelope(frames: readonly Buffer[], bodyFrames = 1): Buffer | null {
  if (frames.length !== 1 + bodyFrames) return null
  const envelope = frames[0] as Buffer
  return envelope.length >= 1 && envelope.length <= 255 ? envelope : null
}

/** True when the frame is exactly one command byte. */
export function isCommand(frame: Buffer | undefined, command: number): boolean {
  return frame !== undefined && frame.length === 1 && frame[0] === command
}

function intIn(v: unknown, min: number, max: number): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v >= min && v <= max ? v : undefined
}

export {
  decodeEnvelope,
  decodeEnvelopeAt,
  encodeEnvelope,
  MAX_ID_LENGTH,
  PACK_BYTES,
  packBodies,
  packEnvelopeRecords,
  packEnvelopes,
  packTaskEnvelopes,
  readAcks,
  recordBounds,
  unpackBodies,
  unpackEnvelopes,
  type Envelope,
} from "./protocol-records.js"
export * from "./lpx.js"
