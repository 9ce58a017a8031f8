/** What `Worker` keeps per connection to a sender (a session) and per job it runs. */
import type { Dealer } from "zeromq"
import type { Backoff } from "../../lib/backoff.js"
import { Liveness } from "../../lib/liveness.js"
import {
  FRAME_ACK,
  FRAME_ACKS,
  FRAME_STARTED,
  PACK_BYTES,
  SINGLE_BYTES,
  packBodies,
  packEnvelopeRecords,
  packLimit,
  type Welcome,
} from "../../lib/protocol.js"
import type { PairStateName } from "../../lib/pair/pair-state.js"
import type { SocketWriter } from "../../lib/writer.js"
import type { Worker } from "./worker.js"

export interface Job {
  session: Session
  generation: number
  /**
   * The envelope: the record of a packed TASKS envelopes frame whose length byte is at
   * `envelopeAt`, or all of `envelopes` when `envelopeAt` is -1 (see {@link envelopeOf}).
   */
  envelopes: Buffer
  envelopeAt: number
  /**
   * The body: the record of a packed TASKS bodies frame whose 4-byte length is at `bodyAt`, or
   * all of `body` (a frame, or a split body) when `bodyAt` is -1.
   */
  body: Buffer
  bodyAt: number
  id: string
  attempt: number
  ppx: boolean
  /** The envelope is one of our senders' (so `id` is a stable message id). */
  ours: boolean
  /** Its named queue (PPX/2 meta record; `"default"` otherwise). */
  queue: string
  /** Its headers (PPX/2 meta record; `NO_HEADERS` otherwise). */
  headers: Readonly<Record<string, string>>
}

/** The headers of a job that came without any. */
export const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

/** The envelope of a job as a Buffer of its own (a view of the received frame). */
export function envelopeOf(job: Job): Buffer {
  const { envelopes, envelopeAt: at } = job
  return at < 0 ? envelopes : envelopes.subarray(at + 1, at + 1 + (envelopes[at] as number))
}

/** One connection to one sender: its socket, heartbeats, credit and reconnect backoff. */
export class Session {
  readonly endpoint: string
  readonly worker: Worker
  generation = 0
  socket: Dealer | undefined
  writer: SocketWriter | undefined
  ppx = false
  /** The identity the sender announced in its WELCOME (dedupe keys on it), if any. */
  sender: string | undefined
  /**
   * The sender's pair state, from its WELCOME's `pair` and each PAIR since; undefined for a
   * sender not in a pair.
   */
  pair: PairStateName | undefined
  /**
   * Why the sender refused this session (`PIRATE_CODEC_MISMATCH`: its WELCOME states another
   * codec than ours), until a later connection is served; kept across reconnects, unlike the
   * rest, so that the refusal is reported once, not on each try.
   */
  refused: string | undefined
  connected = false
  heard = false
  /**
   * Set just before the session is lost to silence: when it was last heard from
   * (`performance.now()`), for the vote's window (see `Voter.update`).
   */
  silentSince: number | undefined
  liveness: Liveness
  /**
   * When the receive loop last took a message (`performance.now()`), just before it told
   * `liveness`: a lower bound of the liveness's last "seen", so that a job ending less than an
   * expiry after it need not ask `liveness` (its clock) whether the session expired.
   */
  heardAt = -Infinity
  backoff: Backoff
  abort = new AbortController()
  /** Acks waiting to go out in one ACKS: their envelopes (as in {@link Job}) and replies. */
  ackEnvelopes: Buffer[] = []
  ackEnvelopeAt: number[] = []
  ackReplies: Buffer[] = []
  /** Bytes the packed replies of those acks take. */
  ackBytes = 0
  /** The sender asked to be told when handlers start (STARTED; it has ack deadlines). */
  reportStarts = false
  /** The sender takes ACK (its WELCOME said `single: true`): a large reply goes as its own frame. */
  single = false
  /** Envelopes (as in {@link Job}) of the tasks whose handlers started, to go out in one STARTED. */
  startEnvelopes: Buffer[] = []
  startEnvelopeAt: number[] = []
  /** Largest packed replies frame the sender takes (see `packLimit()`). */
  packLimit = PACK_BYTES
  /** The largest frame the sender takes (its WELCOME's `maxMessageSize`). */
  senderMax = Infinity
  /** Closing: we said GOODBYE on this session; the sender's GOODBYE in answer confirms it. */
  goodbyeSent = false
  goodbyeConfirmed = false
  ackScheduled = false
  /** The worker is taking in a TASKS frame: the end-of-turn flush is scheduled when it is done. */
  #held = false
  reconnectTimer: NodeJS.Timeout | undefined
  closed = false
  /** Jobs of this session received in plain PPP and not finished yet. */
  plainJobs = 0

  constructor(worker: Worker, endpoint: string, liveness: Liveness, backoff: Backoff) {
    this.worker = worker
    this.endpoint = endpoint
    this.liveness = liveness
    this.backoff = backoff
  }

  /** A new connection: plain PPP, nothing pending, until a WELCOME says otherwise. */
  reset(): void {
    this.ppx = false
    this.sender = undefined
    this.pair = undefined
    this.heard = false
    this.connected = false
    this.abort = new AbortController()
    this.ackEnvelopes = []
    this.ackEnvelopeAt = []
    this.ackReplies = []
    this.ackBytes = 0
    this.reportStarts = false
    this.single = false
    this.startEnvelopes = []
    this.startEnvelopeAt = []
    this.packLimit = PACK_BYTES
    this.senderMax = Infinity
    this.goodbyeSent = false
    this.goodbyeConfirmed = false
    this.plainJobs = 0
  }

  /**
   * The sender answered with a (valid) WELCOME: the session speaks PPX/1 with what it says, its
   * heartbeat settings included. True when those changed.
   */
  welcomed(welcome: Welcome): boolean {
    this.ppx = true
    this.sender = welcome.sender
    this.pair = welcome.pair
    this.packLimit = packLimit(welcome.maxMessageSize)
    this.senderMax = welcome.maxMessageSize ?? Infinity
    this.reportStarts = welcome.started === true
    this.single = welcome.single === true
    const { heartbeatInterval, liveness } = welcome
    if (
      heartbeatInterval === this.liveness.heartbeatInterval &&
      liveness === this.liveness.liveness
    )
      return false
    this.liveness = new Liveness({ heartbeatInterval, liveness })
    return true
  }

  /**
   * The sender's state while this session is live (see `VoteSession`): a sender not in a pair,
   * or a plain PPP one, counts as active.
   */
  senderState(): PairStateName | undefined {
    if (this.socket === undefined || !this.heard) return undefined
    return this.pair ?? "active"
  }

  /** A task's handler started: say so (STARTED) at the end of this turn of the event loop. */
  started(job: Job): void {
    this.startEnvelopes.push(job.envelopes)
    this.startEnvelopeAt.push(job.envelopeAt)
    this.#scheduleFlush()
  }

  /** Queues an ack for the next ACKS, sent when full (`maxBatch`, the packed-frame limit) or at the end of this turn. */
  ack(job: Job, reply: Buffer, maxBatch: number): void {
    if (this.single && reply.length >= SINGLE_BYTES) {
      // ACK: the reply is its own frame, sent without a copy, after what is pending (STARTED first).
      this.flush()
      this.writer?.write([FRAME_ACK, envelopeOf(job), reply])
      this.liveness.sent()
      return
    }
    if (this.ackBytes + 4 + reply.length > this.packLimit) this.flush()
    this.ackEnvelopes.push(job.envelopes)
    this.ackEnvelopeAt.push(job.envelopeAt)
    this.ackReplies.push(reply)
    this.ackBytes += 4 + reply.length
    if (this.ackReplies.length >= maxBatch) this.flush()
    else this.#scheduleFlush()
  }

  /** Sends what is pending: STARTED first, so a task's start always reaches the sender ahead of its answer, then ACKS. */
  flush(): void {
    this.ackScheduled = false
    if (this.startEnvelopes.length > 0) {
      const envelopes = packEnvelopeRecords(this.startEnvelopes, this.startEnvelopeAt)
      this.writer?.write([FRAME_STARTED, envelopes])
      this.startEnvelopes = []
      this.startEnvelopeAt = []
      this.liveness.sent()
    }
    if (this.ackReplies.length === 0) return
    const frames = [
      FRAME_ACKS,
      packEnvelopeRecords(this.ackEnvelopes, this.ackEnvelopeAt),
      packBodies(this.ackReplies),
    ]
    this.ackEnvelopes = []
    this.ackEnvelopeAt = []
    this.ackReplies = []
    this.ackBytes = 0
    this.writer?.write(frames)
    this.liveness.sent()
  }

  /**
   * Holds the end-of-turn flush while the worker takes in a TASKS frame, whose handlers may all
   * answer at once: when they do, their acks fill whole ACKS that go out as they fill, and nothing
   * is left for an end-of-turn flush to send.
   */
  hold(): void {
    this.#held = true
  }

  /** Ends {@link hold}: schedules the end-of-turn flush when anything is pending. */
  release(): void {
    this.#held = false
    if (this.startEnvelopes.length > 0 || this.ackReplies.length > 0) this.#scheduleFlush()
  }

  #scheduleFlush(): void {
    if (this.ackScheduled || this.#held) return
    this.ackScheduled = true
    setImmediate(() => this.flush())
  }
}
