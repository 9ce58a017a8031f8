/**
 * Oracles: what each role must do with a message. They mirror the wire protocol of
 * `lib/protocol.ts` with the library's own decoders, so that a property can tell "definitely
 * malformed, must be counted" from "well-formed but stale or foreign, must be ignored".
 */
import { msgpackCodec } from "../../lib/codec.js"
import {
  FRAME_EMPTY,
  PPP,
  PPX,
  decodeEnvelope,
  decodePair,
  unpackEnvelopes,
  decodeNack,
  decodeReady,
  decodeRemoteError,
  decodeRequestHeader,
  decodeWelcome,
  encodeRemoteError,
} from "../../lib/protocol.js"

/**
 * The model of a packed bodies (or replies) frame, written apart from `unpackBodies` so that the
 * fuzzers check it too: the bodies when `frame` is exactly `count` records of a 4-byte
 * big-endian length and that many bytes, else `null`.
 */
export function bodiesOf(frame: Buffer | undefined, count: number): Buffer[] | null {
  if (frame === undefined) return null
  const bodies: Buffer[] = []
  let rest = frame
  while (rest.length > 0) {
    if (rest.length < 4 || rest.readUInt32BE(0) > rest.length - 4) return null
    bodies.push(rest.subarray(4, 4 + rest.readUInt32BE(0)))
    rest = rest.subarray(4 + rest.readUInt32BE(0))
  }
  return count >= 1 && bodies.length === count ? bodies : null
}

/** The (envelope, body) pairs of a well-formed TASKS or ACKS `[command, envelopes, bodies]`. */
export function batchOf(frames: readonly Buffer[]): [Buffer, Buffer][] | null {
  if (frames.length !== 3) return null
  const envelopes = unpackEnvelopes(frames[1])
  const bodies = envelopes && bodiesOf(frames[2], envelopes.length)
  return envelopes && bodies ? envelopes.map((e, i) => [e, bodies[i] as Buffer]) : null
}

/** What the queue core (sender, queue backend) must do with one message from a peer. */
export interface DispatcherExpectation {
  /** Drops it must count at least (definitely malformed). */
  dropped: number
  /** Stale acks it must count at least (well-formed acks naming nothing this peer holds). */
  stale: number
  /** Drops + stale acks it may count at most. */
  most: number
  /** A valid PPX READY: answered with a WELCOME. */
  welcome: boolean
}

/**
 * The queue core's view of a message `frames` (without the routing id) from a peer that holds
 * nothing: which part is definitely malformed, which acks are stale.
 */
export function expectFromDispatcher(frames: readonly Buffer[]): DispatcherExpectation {
  const n = frames.length
  const f = frames[0] ?? FRAME_EMPTY
  const none = { dropped: 0, stale: 0, most: 1, welcome: false }
  const drop = { dropped: 1, stale: 0, most: 1, welcome: false }
  if (n === 1) {
    // An empty frame is what ROUTER_NOTIFY delivers on a disconnect: indistinguishable.
    if (f.length === 0) return none
    if (f[0] === PPP.READY) {
      try {
        return { ...none, welcome: decodeReady(f) !== null }
      } catch {
        return drop
      }
    }
    if (f.length !== 1) return drop
    return f[0] === PPP.HEARTBEAT || f[0] === PPX.GOODBYE ? none : drop
  }
  const envOk = (e: Buffer | undefined): boolean => decodeEnvelope(e) !== null
  if (n === 3 && frames[1]?.length === 0 && f.length > 1)
    return envOk(f) ? { ...none, stale: 1 } : drop
  if (f.length === 1) {
    if (f[0] === PPX.ACKS) {
      // [0x12, envelopes, replies]: anything else is dropped whole
      const acks = batchOf(frames)
      if (!acks) return drop
      let bad = 0
      for (const [e] of acks) if (!envOk(e)) bad++
      return { dropped: bad, stale: acks.length - bad, most: acks.length, welcome: false }
    }
    if (f[0] === PPX.NACK && n === 3) {
      try {
        decodeNack(frames[2])
      } catch {
        return drop
      }
      return envOk(frames[1]) ? { ...none, stale: 1 } : drop
    }
    // EXTEND names envelopes to renew; one naming nothing is ignored (and not counted: see
    // the property "EXTEND with a foreign envelope" in sender.test.ts).
    if (f[0] === PPX.EXTEND && n >= 2) return { ...none, most: n - 1 }
  }
  return drop
}

/** How a worker in a PPX session classifies a message `frames` from its sender. */
export type WorkerVerdict =
  "task" | "tasks" | "heartbeat" | "welcome" | "goodbye" | "pair" | "dropped"

export function expectFromWorker(frames: readonly Buffer[]): WorkerVerdict {
  const n = frames.length
  const f = frames[0] ?? FRAME_EMPTY
  if (n === 3 && frames[1]?.length === 0) return "task"
  if (f.length === 1) {
    const cmd = f[0]
    if (n === 1 && cmd === PPP.HEARTBEAT) return "heartbeat"
    if (cmd === PPX.WELCOME && n === 2) {
      try {
        decodeWelcome(frames[1])
        return "welcome"
      } catch {
        return "dropped"
      }
    }
    if (cmd === PPX.TASKS) return batchOf(frames) ? "tasks" : "dropped"
    if (cmd === PPX.PAIR && n === 2) {
      try {
        decodePair(frames[1])
        return "pair" // a sender pair's state: taken, nothing to answer
      } catch {
        return "dropped"
      }
    }
    if (cmd === PPX.GOODBYE && n === 1) return "goodbye"
  }
  return "dropped"
}

/** How a Lazy Pirate server classifies a message (frames as the client's DEALER sent them). */
export type ServerVerdict =
  { kind: "dropped" } | { kind: "request"; prefix: Buffer[]; id: string | undefined; body: Buffer }

export function expectFromServer(frames: readonly Buffer[]): ServerVerdict {
  const j = frames.findIndex((f) => f.length === 0)
  if (j < 0) return { kind: "dropped" }
  const bodyFrames = frames.length - j - 1
  if (bodyFrames !== 1 && bodyFrames !== 2) return { kind: "dropped" }
  const body = frames[frames.length - 1] as Buffer
  const prefix = frames.slice(0, j + 1)
  if (bodyFrames === 1) return { kind: "request", prefix, id: undefined, body }
  const id = decodeRequestHeader(frames[j + 1])
  return id === null ? { kind: "dropped" } : { kind: "request", prefix, id, body }
}

/** How a queue's frontend classifies a message: REQ-style only, `["", body]` or `["", header, body]`. */
export function expectFromFrontend(frames: readonly Buffer[]): ServerVerdict {
  if (frames[0]?.length !== 0 || (frames.length !== 2 && frames.length !== 3))
    return { kind: "dropped" }
  const body = frames[frames.length - 1] as Buffer
  if (frames.length === 2) return { kind: "request", prefix: [FRAME_EMPTY], id: undefined, body }
  const id = decodeRequestHeader(frames[1])
  return id === null ? { kind: "dropped" } : { kind: "request", prefix: [FRAME_EMPTY], id, body }
}

/** What an echo handler (`(p) => p`, msgpack codec) makes of `body`. */
export type Echo =
  | { kind: "ok"; reply: Buffer }
  | { kind: "undecodable"; error: Error }
  | { kind: "unencodable"; error: Error }

export function echoOf(body: Buffer): Echo {
  let value: unknown
  try {
    value = msgpackCodec.decode(body)
  } catch (err) {
    return { kind: "undecodable", error: err as Error }
  }
  try {
    return { kind: "ok", reply: msgpackCodec.encode(value) }
  } catch (err) {
    return { kind: "unencodable", error: err as Error }
  }
}

/** The LPX/1 error body a Lazy Pirate server sends for a failed request. */
export function remoteErrorOf(error: Error): Buffer {
  return encodeRemoteError(error)
}

export { decodeRemoteError }

/** A stable key for a list of frames. */
export const keyOf = (frames: readonly Buffer[]): string =>
  frames.map((f) => f.toString("hex")).join("|")
