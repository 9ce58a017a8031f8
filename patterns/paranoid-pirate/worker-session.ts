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
  packEnvelopes,
  packLimit,
  type Welcome,
} from "../../lib/protocol.js"
import type { SocketWriter } from "../../lib/writer.js"
import type { Worker } from "./worker.js"

export interface Job {
  session: Session
  generation: number
  envelope: Buffer
  body: Buffer
  id: string
  attempt: number
  ppx: boolean
  /** The envelope is one of our senders' (so `id` is a stable message id). */
  ours: boolean
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
  connected = false
  heard = false
  liveness: Liveness
  backoff: Backoff
  abort = new AbortController()
  /** Acks waiting to go out in one ACKS: their envelopes and replies. */
  ackEnvelopes: Buffer[] = []
  ackReplies: Buffer[] = []
  /** Bytes the packed replies of those acks take. */
  ackBytes = 0
  /** The sender asked to be told when handlers start (STARTED; it has ack deadlines). */
  reportStarts = false
  /** The sender takes ACK (its WELCOME said `single: true`): a large reply goes as its own frame. */
  single = false
  /** Envelopes of the tasks whose handlers started, to go out in one STARTED. */
  startEnvelopes: Buffer[] = []
  /** Largest packed replies frame the sender takes (see `packLimit()`). */
  packLimit = PACK_BYTES
  /** The largest frame the sender takes (its WELCOME's `maxMessageSize`). */
  senderMax = Infinity
  /** Closing: we said GOODBYE on this session; the sender's GOODBYE in answer confirms it. */
  goodbyeSent = false
  goodbyeConfirmed = false
  ackScheduled = false
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
    this.heard = false
    this.connected = false
    this.abort = new AbortController()
    this.ackEnvelopes = []
    this.ackReplies = []
    this.ackBytes = 0
    this.reportStarts = false
    this.single = false
    this.startEnvelopes = []
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

  /** A task's handler started: say so (STARTED) at the end of this turn of the event loop. */
  started(envelope: Buffer): void {
    this.startEnvelopes.push(envelope)
    this.#scheduleFlush()
  }

  /** Queues an ack for the next ACKS, sent when full (`maxBatch`, the packed-frame limit) or at the end of this turn. */
  ack(envelope: Buffer, reply: Buffer, maxBatch: number): void {
    if (this.single && reply.length >= SINGLE_BYTES) {
      // ACK: the reply is its own frame, sent without a copy, after what is pending (STARTED first).
      this.flush()
      this.writer?.write([FRAME_ACK, envelope, reply])
      this.liveness.sent()
      return
    }
    if (this.ackBytes + 4 + reply.length > this.packLimit) this.flush()
    this.ackEnvelopes.push(envelope)
    this.ackReplies.push(reply)
    this.ackBytes += 4 + reply.length
    if (this.ackReplies.length >= maxBatch) this.flush()
    else this.#scheduleFlush()
  }

  /** Sends what is pending: STARTED first, so a task's start always reaches the sender ahead of its answer, then ACKS. */
  flush(): void {
    this.ackScheduled = false
    if (this.startEnvelopes.length > 0) {
      this.writer?.write([FRAME_STARTED, packEnvelopes(this.startEnvelopes)])
      this.startEnvelopes = []
      this.liveness.sent()
    }
    if (this.ackReplies.length === 0) return
    const frames = [FRAME_ACKS, packEnvelopes(this.ackEnvelopes), packBodies(this.ackReplies)]
    this.ackEnvelopes = []
    this.ackReplies = []
    this.ackBytes = 0
    this.writer?.write(frames)
    this.liveness.sent()
  }

  #scheduleFlush(): void {
    if (this.ackScheduled) return
    this.ackScheduled = true
    setImmediate(() => this.flush())
  }
}
