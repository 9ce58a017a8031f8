/**
 * Hostile-input helpers: fast-check arbitraries of wire frames (random and structured from the
 * protocol's command bytes), models that say what each role must do with a message, raw ZeroMQ
 * peers that record what they receive, and a guard against unhandled rejections.
 *
 * The models mirror the wire protocol of `lib/protocol.ts` (PPP, PPX/1, LPX/1) using the
 * library's own decoders, so that a property can tell "definitely malformed, must be counted"
 * from "well-formed but stale or foreign, must be ignored".
 */
import { EventEmitter } from "node:events"
import fc from "fast-check"
import { afterAll, afterEach, beforeAll, expect } from "vitest"
import { Dealer, type Router } from "zeromq"
import { msgpackCodec, packMeta } from "../../lib/codec.js"
import {
  FRAME_ACKS,
  FRAME_EMPTY,
  FRAME_EXTEND,
  FRAME_GOODBYE,
  FRAME_HEARTBEAT,
  FRAME_NACK,
  FRAME_READY,
  FRAME_TASKS,
  MAX_ID_LENGTH,
  PPP,
  PPX,
  decodeEnvelope,
  packBodies,
  packEnvelopes,
  unpackEnvelopes,
  decodeNack,
  decodeReady,
  decodeRemoteError,
  decodeRequestHeader,
  decodeWelcome,
  encodeEnvelope,
  encodeReady,
  encodeRemoteError,
  encodeRequestHeader,
  type Envelope,
} from "../../lib/protocol.js"
import { waitFor } from "../helpers/wait.js"

// ---------------------------------------------------------------------------------------------
// process guard

/** What escaped to the process while a fuzz file ran. */
export interface ProcessGuard {
  readonly rejections: unknown[]
  readonly exceptions: unknown[]
  /** Errors emitted as `"error"` by the objects under test (see {@link ProcessGuard.watch}). */
  readonly errors: unknown[]
  /** Records the `"error"` events of an emitter (a role under test) into `errors`. */
  watch(emitter: EventEmitter): void
  /** Fails when anything was recorded. */
  check(): void
}

/**
 * Installs process-level `unhandledRejection` and `uncaughtExceptionMonitor` listeners for the
 * file (beforeAll/afterAll) and checks after each test that nothing escaped.
 */
export function guardProcess(): ProcessGuard {
  const guard: ProcessGuard = {
    rejections: [],
    exceptions: [],
    errors: [],
    watch(emitter) {
      emitter.on("error", (err: unknown) => guard.errors.push(err))
    },
    check() {
      expect(guard.rejections, "unhandled rejections").toEqual([])
      expect(guard.exceptions, "uncaught exceptions").toEqual([])
      expect(guard.errors, "'error' events").toEqual([])
    },
  }
  const onRejection = (reason: unknown): void => {
    guard.rejections.push(reason)
  }
  const onException = (err: unknown): void => {
    guard.exceptions.push(err)
  }
  beforeAll(() => {
    process.on("unhandledRejection", onRejection)
    process.on("uncaughtExceptionMonitor", onException)
  })
  afterEach(async () => {
    // A rejection is reported after the microtask queue drains: give it one macrotask.
    await new Promise((r) => setImmediate(r))
    guard.check()
  })
  afterAll(() => {
    process.off("unhandledRejection", onRejection)
    process.off("uncaughtExceptionMonitor", onException)
  })
  return guard
}

// ---------------------------------------------------------------------------------------------
// arbitraries

const toBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength)

/** 0–`maxLength` random bytes. */
export const bytes = (maxLength = 64): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ maxLength }).map(toBuffer)

/**
 * A random multipart message: 1–6 frames of 0–64 random bytes. (A message of 0 frames cannot be
 * put on the wire: zeromq.js sends nothing for `send([])`, so the fuzzers never generate one.)
 */
export const randomMessage: fc.Arbitrary<Buffer[]> = fc.array(bytes(), {
  minLength: 1,
  maxLength: 6,
})

/** Any value msgpack-encoded the way the library does; values it cannot encode give 0xc1. */
export const packedAnything: fc.Arbitrary<Buffer> = fc
  .anything({ maxDepth: 2, maxKeys: 4 })
  .map((v) => {
    try {
      return msgpackCodec.encode(v)
    } catch {
      return Buffer.from([0xc1])
    }
  })

/** Valid msgpack cut short (a strict prefix, possibly empty). */
export const truncatedPacked: fc.Arbitrary<Buffer> = packedAnything.chain((b) =>
  fc.nat({ max: Math.max(0, b.length - 1) }).map((n) => b.subarray(0, n)),
)

/** msgpack, truncated msgpack or random bytes: what a metadata or payload frame may hold. */
export const msgpackish: fc.Arbitrary<Buffer> = fc.oneof(packedAnything, truncatedPacked, bytes())

/** The protocol's command bytes: PPP READY/HEARTBEAT and PPX WELCOME…GOODBYE. */
export const COMMAND_BYTES = [
  PPP.READY,
  PPP.HEARTBEAT,
  PPX.WELCOME,
  PPX.TASKS,
  PPX.ACKS,
  PPX.NACK,
  PPX.EXTEND,
  PPX.GOODBYE,
] as const

/** A one-byte command frame: mostly the protocol's, sometimes any byte. */
export const commandFrame: fc.Arbitrary<Buffer> = fc
  .oneof(
    { weight: 3, arbitrary: fc.constantFrom(...COMMAND_BYTES) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
  )
  .map((c) => Buffer.from([c]))

/**
 * A frame, or a reference to the envelope of the `ref`-th message in flight (resolved when the
 * run knows its ids): with its real attempt (`"same"`) or another one, optionally with byte
 * `tamper` flipped.
 */
export type FrameSpec = Buffer | EnvelopeRef | PackedSpec
export interface EnvelopeRef {
  readonly ref: number
  readonly attempt: number | "same"
  readonly tamper?: number
}
/** The packed envelopes frame of TASKS and ACKS, built from envelope specs. */
export interface PackedSpec {
  readonly pack: readonly FrameSpec[]
}
export type MessageSpec = readonly FrameSpec[]

const asciiId = (minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: "binary-ascii", minLength, maxLength })

const uint32 = fc.integer({ min: 0, max: 0xffff_ffff })

/** Forged envelopes: random bytes, our format with made-up ids, or naming a message in flight. */
export const envelopeSpec: fc.Arbitrary<FrameSpec> = fc.oneof(
  bytes(),
  // our format, an id that was never issued (sometimes too long to be ours)
  fc
    .tuple(asciiId(1, MAX_ID_LENGTH + 4), uint32)
    .map(([id, attempt]) => encodeEnvelope(id, attempt)),
  fc
    .tuple(fc.stringMatching(/^[0-9a-f]{16}$/), fc.integer({ min: 0, max: 9 }))
    .map(([id, attempt]) => encodeEnvelope(id, attempt)),
  // a message in flight to another worker: right attempt, wrong attempt, damaged
  fc.record({ ref: fc.nat(7), attempt: fc.constant<"same">("same") }),
  fc.record({ ref: fc.nat(7), attempt: uint32 }),
  fc.record({ ref: fc.nat(7), attempt: fc.constant<"same">("same"), tamper: fc.nat(5) }),
)

/** Resolves envelope references against the messages in flight. */
export function materialize(spec: MessageSpec, inflight: readonly Envelope[]): Buffer[] {
  return spec.map((f) => {
    if (Buffer.isBuffer(f)) return f
    if ("pack" in f) return packAny(materialize(f.pack, inflight))
    const target = inflight.length > 0 ? inflight[f.ref % inflight.length] : undefined
    const id = target?.id ?? "0000000000000000"
    const attempt = f.attempt === "same" ? (target?.attempt ?? 1) : f.attempt
    const env = encodeEnvelope(id, attempt)
    if (f.tamper !== undefined) {
      const i = f.tamper % env.length
      env[i] = (env[i] as number) ^ 0xff
    }
    return env
  })
}

const validHello = fc.record({
  credit: fc.integer({ min: 1, max: 8 }),
  heartbeatInterval: fc.integer({ min: 1, max: 60_000 }),
  liveness: fc.integer({ min: 1, max: 10 }),
})

/** READY frames: plain, PPX with a valid hello, PPX with garbage metadata, garbage trailers. */
export const readyFrame: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constant(FRAME_READY),
  validHello.map((h) => Buffer.concat([FRAME_READY, Buffer.from("PPX\x01"), packMeta(h)])),
  fc
    .tuple(fc.integer({ min: 0, max: 255 }), msgpackish)
    .map(([v, meta]) => Buffer.concat([FRAME_READY, Buffer.from("PPX"), Buffer.from([v]), meta])),
  bytes().map((b) => Buffer.concat([FRAME_READY, b])),
)

const nackMeta: fc.Arbitrary<Buffer> = fc.oneof(
  msgpackish,
  fc
    .record(
      { error: fc.string({ maxLength: 20 }), reject: fc.boolean(), delay: fc.nat(50) },
      { requiredKeys: [] },
    )
    .map((m) => packMeta(m)),
)

/** Command frame followed by 0–5 random frames: mostly wrong frame counts. */
const commandWithFrames: fc.Arbitrary<Buffer[]> = fc
  .tuple(commandFrame, fc.array(bytes(), { maxLength: 5 }))
  .map(([c, rest]) => [c, ...rest])

/** Packs envelopes as TASKS and ACKS carry them; an envelope too long to pack becomes garbage. */
export function packAny(envelopes: readonly Buffer[]): Buffer {
  return packEnvelopes(envelopes.map((e) => (e.length > 255 ? e.subarray(0, 255) : e)))
}

/**
 * The packed bodies frame of TASKS (replies frame of ACKS) for `bodies`: mostly right, often
 * damaged: a record too few or too many, cut short (inside a length prefix or a body), a length
 * prefix claiming more than the frame holds, trailing bytes, random bytes.
 */
export function packedBodies(bodies: readonly Buffer[]): fc.Arbitrary<Buffer> {
  const packed = packBodies(bodies)
  const damaged: fc.Arbitrary<Buffer>[] = [
    fc.constant(packBodies(bodies.slice(1))),
    bytes(8).map((b) => packBodies([...bodies, b])),
    fc.nat({ max: Math.max(0, packed.length - 1) }).map((n) => packed.subarray(0, n)),
    // a dangling, partial length prefix
    fc.integer({ min: 1, max: 3 }).map((n) => Buffer.concat([packed, Buffer.alloc(n)])),
    bytes(8)
      .filter((b) => b.length > 0)
      .map((b) => Buffer.concat([packed, b])),
    bytes(),
  ]
  if (bodies.length > 0) {
    // record i's length prefix claims 1 … 2³² − 1 − length more bytes than it has
    damaged.push(
      fc.tuple(fc.nat(bodies.length - 1), uint32).map(([i, extra]) => {
        const out = Buffer.from(packed)
        let at = 0
        for (let k = 0; k < i; k++) at += 4 + (bodies[k] as Buffer).length
        const length = (bodies[i] as Buffer).length
        out.writeUInt32BE(length + 1 + (extra % (0xffff_ffff - length)), at)
        return out
      }),
    )
  }
  return fc.oneof(
    { weight: damaged.length, arbitrary: fc.constant(packed) },
    ...damaged.map((arbitrary) => ({ weight: 1, arbitrary })),
  )
}

/**
 * A TASKS or ACKS message `[command, envelopes, bodies]` for `pairs` of (envelope, body): the
 * bodies frame as {@link packedBodies} makes it, or a frame too many, a frame too few, or one
 * frame per body (the draft format).
 */
function batchMessage(
  command: Buffer,
  pairs: readonly (readonly [FrameSpec, Buffer])[],
): fc.Arbitrary<MessageSpec> {
  const pack: PackedSpec = { pack: pairs.map(([e]) => e) }
  const bodies = pairs.map(([, b]) => b)
  return fc.oneof(
    { weight: 6, arbitrary: packedBodies(bodies).map((b): MessageSpec => [command, pack, b]) },
    {
      weight: 1,
      arbitrary: bytes().map((extra): MessageSpec => [command, pack, packBodies(bodies), extra]),
    },
    { weight: 1, arbitrary: fc.constant<MessageSpec>([command, pack]) },
    { weight: 1, arbitrary: fc.constant<MessageSpec>([command, pack, ...bodies]) },
  )
}

/** What a hostile worker may send to a sender or a queue's backend. */
export const toSenderMessage: fc.Arbitrary<MessageSpec> = fc.oneof(
  randomMessage,
  commandWithFrames,
  fc.constantFrom<MessageSpec>([FRAME_READY], [FRAME_HEARTBEAT], [FRAME_GOODBYE], [FRAME_EMPTY]),
  readyFrame.map((f) => [f]),
  // PPP reply [envelope, "", body]
  fc.tuple(envelopeSpec, bytes()).map(([e, b]): MessageSpec => [e, FRAME_EMPTY, b]),
  // ACKS [0x12, envelopes, replies], often damaged (see batchMessage)
  fc
    .array(fc.tuple(envelopeSpec, bytes()), { minLength: 1, maxLength: 3 })
    .chain((pairs) => batchMessage(FRAME_ACKS, pairs)),
  // NACK [0x13, envelope, meta]
  fc.tuple(envelopeSpec, nackMeta).map(([e, m]): MessageSpec => [FRAME_NACK, e, m]),
  // EXTEND [0x14, envelope…]
  fc.array(envelopeSpec, { maxLength: 3 }).map((es): MessageSpec => [FRAME_EXTEND, ...es]),
)

const validWelcome = fc.record({
  version: fc.integer({ min: 1, max: 255 }),
  heartbeatInterval: fc.integer({ min: 1, max: 60_000 }),
  liveness: fc.integer({ min: 1, max: 10 }),
})

/** What a hostile sender may send to a worker (GOODBYE is rare: it makes the worker reconnect). */
export const toWorkerMessage: fc.Arbitrary<MessageSpec> = fc.oneof(
  { weight: 4, arbitrary: randomMessage },
  { weight: 4, arbitrary: commandWithFrames },
  { weight: 2, arbitrary: fc.constant<MessageSpec>([FRAME_HEARTBEAT]) },
  { weight: 1, arbitrary: fc.constant<MessageSpec>([FRAME_GOODBYE]) },
  {
    weight: 3,
    arbitrary: fc
      .oneof(
        msgpackish,
        validWelcome.map((w) => packMeta(w)),
      )
      .map((m): MessageSpec => [Buffer.from([PPX.WELCOME]), m]),
  },
  // TASKS [0x11, envelopes, bodies], often damaged (see batchMessage)
  {
    weight: 4,
    arbitrary: fc
      .array(fc.tuple(envelopeSpec, msgpackish), { minLength: 1, maxLength: 3 })
      .chain((pairs) => batchMessage(FRAME_TASKS, pairs)),
  },
  // PPP request [envelope, "", body]
  {
    weight: 4,
    arbitrary: fc.tuple(envelopeSpec, msgpackish).map(([e, b]): MessageSpec => [e, FRAME_EMPTY, b]),
  },
)

/** Lazy Pirate request ids: a small pool (retries, joins, cache hits), random, too long. */
const requestId: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("fz-a", "fz-b", "fz-c"),
  asciiId(1, MAX_ID_LENGTH + 8),
)

/**
 * What a hostile client may send to a Lazy Pirate server or a queue's frontend, as a DEALER
 * sends it (the ROUTER adds the routing id): plain and framed REQ-style requests, bad headers,
 * extra envelope frames, missing delimiters and random frames.
 */
export const toServerMessage: fc.Arbitrary<Buffer[]> = fc.oneof(
  randomMessage,
  msgpackish.map((b) => [FRAME_EMPTY, b]),
  fc.tuple(requestId, msgpackish).map(([id, b]) => [FRAME_EMPTY, encodeRequestHeader(id), b]),
  fc.tuple(bytes(), msgpackish).map(([h, b]) => [FRAME_EMPTY, h, b]),
  fc
    .tuple(
      fc.array(
        bytes(8).filter((b) => b.length > 0),
        { minLength: 1, maxLength: 2 },
      ),
      msgpackish,
    )
    .map(([prefix, b]) => [...prefix, FRAME_EMPTY, b]),
  fc.array(bytes(), { minLength: 2, maxLength: 4 }).map((rest) => [FRAME_EMPTY, ...rest]),
  fc.constant<Buffer[]>([FRAME_EMPTY]),
)

// ---------------------------------------------------------------------------------------------
// models

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
export type WorkerVerdict = "task" | "tasks" | "heartbeat" | "welcome" | "goodbye" | "dropped"

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

// ---------------------------------------------------------------------------------------------
// raw peers

/** Records every message a raw socket receives; `waitFor` resolves on the first match. */
export class Inbox extends EventEmitter<{ message: [Buffer[]] }> {
  readonly messages: Buffer[][] = []
  readonly done: Promise<void>

  constructor(socket: Dealer | Router) {
    super()
    this.done = (async () => {
      try {
        for await (const msg of socket) {
          this.messages.push(msg)
          this.emit("message", msg)
        }
      } catch {
        /* closed */
      }
    })()
  }

  count(match: (m: Buffer[]) => boolean): number {
    let n = 0
    for (const m of this.messages) if (match(m)) n++
    return n
  }

  /** Resolves once `count(match) >= n`. */
  waitForCount(
    match: (m: Buffer[]) => boolean,
    n: number,
    what: string,
    timeout = 5000,
  ): Promise<void> {
    return this.#until(() => this.count(match) >= n, what, timeout)
  }

  /** Resolves with the first message (from index `from` on) that matches. */
  async waitFor(
    match: (m: Buffer[]) => boolean,
    what: string,
    timeout = 5000,
    from = 0,
  ): Promise<Buffer[]> {
    const found = (): Buffer[] | undefined => this.messages.slice(from).find(match)
    await this.#until(() => found() !== undefined, what, timeout)
    return found() as Buffer[]
  }

  /** Resolves once `done()` holds, checked now and at every message; rejects after `timeout` ms. */
  #until(done: () => boolean, what: string, timeout: number): Promise<void> {
    if (done()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const onMessage = (): void => {
        if (!done()) return
        clearTimeout(timer)
        this.off("message", onMessage)
        resolve()
      }
      const timer = setTimeout(() => {
        this.off("message", onMessage)
        reject(new Error(`timed out after ${timeout} ms waiting for ${what}`))
      }, timeout)
      this.on("message", onMessage)
    })
  }
}

/** True for a message that carries work to a worker (a PPP request or PPX TASKS). */
export function isTask(m: readonly Buffer[]): boolean {
  const f = m[0]
  return (
    (f?.length === 1 && f[0] === PPX.TASKS) || (m.length === 3 && m[1]?.length === 0) // PPP
  )
}

/** A promise with its resolver, for gates in handlers. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined
  const promise = new Promise<void>((r) => (open = r))
  return { promise, open }
}

// ---------------------------------------------------------------------------------------------
// the queue core under fire: shared by the Sender and the ParanoidPirateQueue backend

/** A role built on the queue core, seen through its public API. */
export interface CoreTarget {
  /** Where workers connect. */
  readonly endpoint: string
  stats(): { dropped: number; staleAcks: number; inFlight: number; workers: number; acked: number }
  /** Sends a payload to some worker and resolves with its reply. */
  request(payload: unknown): Promise<unknown>
}

/**
 * The legitimate worker's handler: echoes its payload, and holds payloads that carry this
 * handler's secret `hold` token until `release()`, so that messages are in flight while the
 * garbage arrives. Garbage cannot guess the token.
 */
export class HoldingEcho {
  readonly token = `hold-${Math.random().toString(36).slice(2)}`
  /** Calls by payload `n`. */
  readonly calls = new Map<number, number>()
  /** Envelopes (id, attempt) of the held messages. */
  held: Envelope[] = []
  #gate = gate()

  readonly handler = async (p: unknown, ctx: { id: string; attempt: number }): Promise<unknown> => {
    if (typeof p === "object" && p !== null) {
      const o = p as { n?: unknown; hold?: unknown }
      if (typeof o.n === "number") this.calls.set(o.n, (this.calls.get(o.n) ?? 0) + 1)
      if (o.hold === this.token) {
        this.held.push({ id: ctx.id, attempt: ctx.attempt })
        await this.#gate.promise
      }
    }
    return p
  }

  release(): void {
    this.#gate.open()
    this.#gate = gate()
    this.held = []
  }
}

/** The barrier: a valid PPX READY, answered by a WELCOME once everything before it was read. */
const BARRIER_HELLO = { credit: 1, heartbeatInterval: 60_000, liveness: 3 }
const isWelcome = (m: readonly Buffer[]): boolean =>
  m.length === 2 && m[0]?.length === 1 && m[0][0] === PPX.WELCOME

/**
 * One fuzz run against the queue core:
 * 1. two requests are put in flight at the legitimate worker (held by `echo`);
 * 2. a fresh DEALER sends the garbage `specs` (forged envelopes resolved against those two),
 *    then a valid PPX READY as a barrier, and waits for the WELCOMEs;
 * 3. checks: definitely malformed messages counted in `dropped`, forged acks in `staleAcks`,
 *    nothing double counted, the two requests neither settled nor moved, no task sent to the
 *    hostile peer;
 * 4. closes the hostile peer, releases the held messages and checks that each request resolves
 *    with its own payload, that each was handled exactly once and acked exactly once, and that
 *    a fresh request still completes.
 */
export async function coreRun(
  target: CoreTarget,
  echo: HoldingEcho,
  specs: readonly MessageSpec[],
  seq: { n: number },
): Promise<void> {
  const before = target.stats()
  const payloads = [0, 1].map(() => ({ hold: echo.token, n: seq.n++ }))
  const settled: unknown[] = []
  const pending = payloads.map((p) => target.request(p))
  for (const p of pending)
    void p.then(
      (v) => settled.push(v),
      (e: unknown) => settled.push(e),
    )
  const fuzz = new Dealer({ linger: 0 })
  const inbox = new Inbox(fuzz)
  try {
    await waitFor(() => expect(echo.held.length, "2 messages in flight at the worker").toBe(2))
    const inflight = [...echo.held]
    fuzz.connect(target.endpoint)
    const want = { dropped: 0, stale: 0, most: 0, welcomes: 1 }
    for (const spec of specs) {
      const frames = materialize(spec, inflight)
      const e = expectFromDispatcher(frames)
      want.dropped += e.dropped
      want.stale += e.stale
      want.most += e.most
      if (e.welcome) want.welcomes++
      await fuzz.send(frames)
    }
    await fuzz.send(encodeReady(BARRIER_HELLO))
    await inbox.waitForCount(isWelcome, want.welcomes, `${want.welcomes} WELCOMEs`)
    const after = target.stats()
    const dropped = after.dropped - before.dropped
    const stale = after.staleAcks - before.staleAcks
    expect(dropped, "definitely malformed messages are counted").toBeGreaterThanOrEqual(
      want.dropped,
    )
    expect(stale, "forged acks are counted as stale").toBeGreaterThanOrEqual(want.stale)
    expect(dropped + stale, "nothing is counted twice").toBeLessThanOrEqual(want.most)
    expect(settled, "forged acks/nacks settle nothing").toEqual([])
    expect(after.inFlight, "the held messages stay in flight").toBe(before.inFlight + 2)
    expect(inbox.messages.filter(isTask), "no work is sent to the hostile peer").toEqual([])
  } catch (err) {
    echo.release()
    throw err
  } finally {
    fuzz.close()
  }
  await waitFor(() =>
    expect(target.stats().workers, "the hostile peer to leave").toBe(before.workers),
  )
  echo.release()
  expect(await Promise.all(pending), "each request gets its own reply").toEqual(payloads)
  for (const p of payloads) expect(echo.calls.get(p.n), `calls of message ${p.n}`).toBe(1)
  const fresh = { n: seq.n++ }
  expect(await target.request(fresh)).toEqual(fresh)
  expect(target.stats().acked - before.acked, "acked exactly once each").toBe(3)
}
