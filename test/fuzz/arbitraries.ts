/**
 * fast-check arbitraries of hostile wire frames, random and structured from the protocol's
 * command bytes (PPP, PPX/1, LPX/1), for each role's socket.
 */
import fc from "fast-check"
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
  packBodies,
  packEnvelopes,
  encodeEnvelope,
  encodeRequestHeader,
  type Envelope,
} from "../../lib/protocol.js"

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
