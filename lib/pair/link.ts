/**
 * The pair link (docs/pair.md, section 4): each node binds a ROUTER on `pair.bind` and connects a
 * DEALER to the peer's. A node says everything on its DEALER and hears everything on its ROUTER,
 * so there is no reply routing; the state machine (`PairState`) decides, the link carries HELLO,
 * HEARTBEAT, the replication stream (RECORDS) and its acknowledgements (ACK).
 */
import { randomBytes } from "node:crypto"
import { EventEmitter } from "node:events"
import { Dealer, Router } from "zeromq"
import { packMeta } from "../codec.js"
import { debug } from "../debug.js"
import { PirateError, errorCode } from "../errors.js"
import { assertOneOf, assertPositiveInt, singleEndpoint } from "../validate.js"
import { SocketWriter, bindRetrying } from "../writer.js"
import { encodeEntries } from "./entries-wire.js"
import {
  PAIR_COMMAND,
  PAIR_LINK_VERSION,
  ROLES,
  packRecords,
  readAck,
  readCopy,
  readCopyEnd,
  readHanded,
  readHandover,
  readHello,
  readRecords,
  readReport,
  toWire,
  type CopyPage,
  type HandoverPage,
  type HelloFields,
  type PeerHello,
  type RecordsBatch,
} from "./link-wire.js"
import { PairState, type PairOutput, type PairRole, type PairStateName } from "./pair-state.js"
import type { ReplicationRecord } from "./replicated-journal.js"

export { PAIR_COMMAND, PAIR_LINK_VERSION } from "./link-wire.js"
export type {
  CopyPage,
  HandoverPage,
  HelloFields,
  PageKind,
  PeerHello,
  RecordsBatch,
  WireRecord,
} from "./link-wire.js"

export interface PairLinkOptions {
  role: PairRole
  /** Where this node's ROUTER binds; `tcp://127.0.0.1:*` picks a port (see `endpoint`). */
  bind: string
  /** The peer's `bind` address; may also be given later to `connect()`. */
  peer?: string
  /** Heartbeat period (ms). @defaultValue 1000 */
  heartbeatInterval?: number
  /** Silence (ms) after which the peer is lost. @defaultValue 3 × heartbeatInterval */
  timeout?: number
  /** The epoch this node last knew (from its pair file). @defaultValue 0 */
  epoch?: number
  /**
   * Largest message taken from the peer (bytes); a larger one is dropped by libzmq and its
   * connection closed. A record carries one group commit of the active's journal, so the
   * sender sets it from its `windowBytes` and `maxMessageSize`. @defaultValue 256 MiB
   */
  maxMessageSize?: number
}

export interface PairLinkEvents {
  /** This node became active or passive. */
  state: [{ state: "active" | "passive"; epoch: number; reason: string }]
  "peer:alive": [{ node: string | undefined }]
  "peer:lost": [{ lastState: PairStateName | undefined }]
  hello: [PeerHello]
  conflict: [{ reason: "same-role" }]
  /** A batch of the peer's replication stream, in order. */
  records: [RecordsBatch]
  /** The peer acknowledged the stream up to `seq` (and, during a full copy, the page `page`). */
  ack: [{ stream: string; seq: number; page?: number }]
  /** A page of a full copy. */
  copy: [CopyPage]
  /** The end of a full copy: `pages` pages, the state at `s0`; the active's `lastId()`. */
  "copy:end": [{ stream: string; s0: number; pages: number; lastId?: string }]
  /** A page of the peer's hand-over. */
  handover: [HandoverPage]
  /** The active took the hand-over page `page`. */
  handed: [{ page: number }]
  /** A malformed message was dropped. */
  dropped: [{ reason: string }]
  error: [Error]
}

/**
 * One node's end of the pair link. `open()` binds, connects to the peer (when given) and starts
 * the heartbeats; every input goes through its `PairState`, whose decisions come out as events.
 */
export class PairLink extends EventEmitter<PairLinkEvents> {
  readonly role: PairRole
  readonly heartbeatInterval: number
  readonly timeout: number
  /** A random id of this process, in every HELLO. */
  readonly node = randomBytes(8).toString("hex")
  readonly #bind: string
  #peer: string | undefined
  readonly #state: PairState
  readonly #router: Router
  #dealer: Dealer | undefined
  #writer: SocketWriter | undefined
  /** The routing id of the peer's current DEALER (its latest HELLO); others are stale. */
  #peerRoute: Buffer | undefined
  #timer: NodeJS.Timeout | undefined
  #deadlineTimer: NodeJS.Timeout | undefined
  #receiving: Promise<void> | undefined
  #endpoint: string | undefined
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  #dropped = 0
  #conflictReported = false
  #hello: () => HelloFields = () => ({})
  /** The `node` of the peer's latest HELLO. */
  #peerNode: string | undefined

  constructor(options: PairLinkOptions) {
    super()
    assertOneOf("role", options.role, ROLES)
    this.#bind = singleEndpoint("bind", options.bind)
    if (options.peer !== undefined) this.#peer = singleEndpoint("peer", options.peer)
    this.heartbeatInterval = options.heartbeatInterval ?? 1000
    assertPositiveInt("heartbeatInterval", this.heartbeatInterval)
    this.timeout = options.timeout ?? 3 * this.heartbeatInterval
    assertPositiveInt("timeout", this.timeout)
    this.role = options.role
    const maxMessageSize = options.maxMessageSize ?? 256 * 1024 * 1024
    assertPositiveInt("maxMessageSize", maxMessageSize)
    this.#router = new Router({ linger: 0, maxMessageSize })
    this.#state = new PairState({
      role: options.role,
      timeout: this.timeout,
      now: performance.now(),
      // Workers vote once per heartbeat: a vote that came just before the peer's silence
      // reached the timeout counts at that moment (see #deadline), not at the next vote.
      voteHold: this.heartbeatInterval,
      ...(options.epoch === undefined ? {} : { epoch: options.epoch }),
    })
  }

  /** The address the ROUTER is bound to, once open. */
  get endpoint(): string | undefined {
    return this.#endpoint
  }

  /** The state machine's state. */
  get state(): PairStateName {
    return this.#state.state
  }

  get epoch(): number {
    return this.#state.epoch
  }

  get peerStatus(): "unknown" | "alive" | "lost" {
    return this.#state.peerStatus
  }

  /** Malformed or stale messages dropped so far. */
  get dropped(): number {
    return this.#dropped
  }

  /** Binds, connects to the peer when it is known, and starts heartbeats. Idempotent. */
  open(): Promise<void> {
    return (this.#opening ??= this.#open())
  }

  async #open(): Promise<void> {
    await bindRetrying(this.#router, this.#bind, "pair.bind")
    this.#endpoint = this.#router.lastEndpoint ?? this.#bind
    this.#receiving = this.#receive().catch((err: unknown) => {
      this.emit("error", err instanceof Error ? err : new Error(String(err)))
    })
    this.#timer = setInterval(() => this.#beat(), this.heartbeatInterval)
    if (this.#peer !== undefined) this.#connect()
  }

  /** Connects to the peer given late (when `peer` was not an option). */
  connect(peer: string): void {
    if (this.#peer !== undefined && this.#dealer !== undefined)
      throw new TypeError("the pair link is connected already")
    this.#peer = singleEndpoint("peer", peer)
    if (this.#opening !== undefined) this.#connect()
  }

  /** Stops the heartbeats and closes both sockets. Idempotent. */
  close(): Promise<void> {
    return (this.#closing ??= this.#close())
  }

  async #close(): Promise<void> {
    await this.#opening?.catch(() => undefined)
    clearInterval(this.#timer)
    clearTimeout(this.#deadlineTimer)
    this.#dropDealer()
    this.#router.close()
    await this.#receiving
  }

  /** A worker's VOTE (docs/pair.md, section 5). */
  vote(): void {
    const out = this.#state.vote(performance.now())
    this.#apply(out)
    if (out.some((o) => o.type === "vote:rejected" && o.reason === "peer-alive")) this.#deadline()
  }

  /** A tick at the moment the peer will have been silent for the timeout (a held vote). */
  #deadline(): void {
    if (this.#deadlineTimer !== undefined || this.#closing !== undefined) return
    const wait = Math.max(0, this.#state.silentAt - performance.now())
    this.#deadlineTimer = setTimeout(() => {
      this.#deadlineTimer = undefined
      if (this.#closing !== undefined) return
      this.#apply(this.#state.tick(performance.now()))
      // Heard meanwhile: the vote is void, or a later one is held and will be ticked again.
    }, wait + 1)
  }

  /** Sends a batch of this node's replication stream (records in order, seqs consecutive). */
  sendRecords(stream: string, records: readonly ReplicationRecord[]): void {
    if (records.length === 0) return
    this.sendEncoded(stream, records[0]?.seq ?? 0, records.map(toWire))
  }

  /** Sends records already in their wire form (`toWire`), numbered from `first`. */
  sendEncoded(stream: string, first: number, records: readonly Record<string, unknown>[]): void {
    if (records.length === 0) return
    this.#send([
      Buffer.from([PAIR_COMMAND.RECORDS]),
      packMeta({ stream, first }),
      packRecords(records),
    ])
  }

  /** Acknowledges the peer's stream up to `seq` (and, during a full copy, the page `page`). */
  sendAck(stream: string, seq: number, page?: number): void {
    const ack = page === undefined ? { stream, seq } : { stream, seq, page }
    this.#send([Buffer.from([PAIR_COMMAND.ACK]), packMeta(ack)])
  }

  /** Sends a page of a full copy. */
  sendCopy(copy: CopyPage): void {
    const { entries, ...header } = copy
    this.#send([
      Buffer.from([PAIR_COMMAND.COPY]),
      packMeta(header),
      encodeEntries(entries, copy.kind === "dead"),
    ])
  }

  /** Ends a full copy of `pages` pages. */
  sendCopyEnd(end: { stream: string; s0: number; pages: number; lastId?: string }): void {
    this.#send([Buffer.from([PAIR_COMMAND.COPY_END]), packMeta(end)])
  }

  /** Sends a page of this node's hand-over. */
  sendHandover(handover: HandoverPage): void {
    const { entries, ...header } = handover
    this.#send([Buffer.from([PAIR_COMMAND.HANDOVER]), packMeta(header), encodeEntries(entries)])
  }

  /** Acknowledges a hand-over page. */
  sendHanded(page: number): void {
    this.#send([Buffer.from([PAIR_COMMAND.HANDED]), packMeta({ page })])
  }

  /**
   * Sets what every HELLO adds (the sender id, a catch-up request); called when a HELLO is built.
   */
  setHello(fields: () => HelloFields): void {
    this.#hello = fields
  }

  /** Sends a HELLO now (with the fields of `setHello`): a new request, or news of the sender id. */
  hello(): void {
    this.#send(this.#helloFrames())
  }

  #helloFrames(): Buffer[] {
    const fields = this.#hello()
    return [
      Buffer.from([PAIR_COMMAND.HELLO]),
      packMeta({ ...fields, version: PAIR_LINK_VERSION, node: this.node, ...this.#report() }),
    ]
  }

  #report(): { role: PairRole; state: PairStateName; epoch: number } {
    return { role: this.role, state: this.#state.state, epoch: this.#state.epoch }
  }

  #connect(): void {
    // Only sends (the peer answers on its own DEALER): nothing to receive but what libzmq needs.
    const dealer = new Dealer({
      linger: 0,
      immediate: true,
      sendHighWaterMark: 10_000,
      maxMessageSize: 64 * 1024,
    })
    dealer.connect(this.#peer as string)
    this.#dealer = dealer
    this.#writer = new SocketWriter(dealer, (err) => {
      // A full or closed DEALER: the message is lost; the stream recovers by catch-up.
      debug("pair link: send failed: %s", errorCode(err) ?? String(err))
    })
    this.#writer.write(this.#helloFrames())
  }

  #dropDealer(): void {
    this.#writer?.clear()
    this.#dealer?.close()
    this.#dealer = undefined
    this.#writer = undefined
  }

  #send(frames: Buffer[]): void {
    this.#writer?.write(frames)
  }

  #beat(): void {
    const now = performance.now()
    this.#apply(this.#state.tick(now))
    // Not behind a send that is stuck (no connection): it would arrive late, with a state that
    // may have changed meanwhile.
    if (this.#writer?.busy === true) return
    this.#send([Buffer.from([PAIR_COMMAND.HEARTBEAT]), packMeta(this.#report())])
  }

  #apply(outputs: PairOutput[]): void {
    for (const o of outputs) {
      switch (o.type) {
        case "active":
        case "passive":
          // What waits to be sent (the peer is unreachable: a DEALER with `immediate` holds it
          // until a connection completes) says the old state: a peer that comes back must not
          // hear it (a starting primary hearing "backup" would become active). A new DEALER,
          // whose HELLO says the new state.
          if (this.#writer?.busy === true && this.#peer !== undefined) {
            this.#dropDealer()
            this.#connect()
          }
          // Tell the peer at once: it may be waiting on this word to decide.
          this.#send([Buffer.from([PAIR_COMMAND.HEARTBEAT]), packMeta(this.#report())])
          this.emit("state", { state: o.type, epoch: o.epoch, reason: o.reason })
          break
        case "peer:alive":
          this.emit("peer:alive", { node: undefined })
          break
        case "peer:lost":
          this.emit("peer:lost", { lastState: this.#state.lastPeer?.state })
          // As for workers: a new DEALER, so nothing queued for the old peer arrives late.
          if (this.#peer !== undefined && this.#dealer !== undefined) {
            this.#dropDealer()
            this.#connect()
          }
          break
        case "conflict":
          if (!this.#conflictReported) {
            this.#conflictReported = true
            this.emit("conflict", { reason: o.reason })
            this.emit(
              "error",
              new PirateError(
                "PIRATE_PROTOCOL",
                `both nodes of the pair have the role "${this.role}": give one "primary" and the other "backup"`,
              ),
            )
          }
          break
        case "vote:rejected":
          debug("pair link: vote rejected (%s)", o.reason)
          break
      }
    }
  }

  async #receive(): Promise<void> {
    for (;;) {
      let frames: Buffer[]
      try {
        frames = await this.#router.receive()
      } catch (err) {
        if (this.#router.closed || errorCode(err) === "EAGAIN") return
        throw err
      }
      this.#handle(frames)
    }
  }

  #drop(reason: string): void {
    this.#dropped++
    debug("pair link: dropped %s", reason)
    this.emit("dropped", { reason })
  }

  #handle(frames: Buffer[]): void {
    const [route, command, ...rest] = frames
    if (route === undefined || command?.length !== 1)
      return this.#drop("a message without a command")
    const now = performance.now()
    const byte = command[0] ?? -1
    if (byte === PAIR_COMMAND.HELLO) {
      const hello = readHello(rest[0])
      if (hello === undefined) return this.#drop("a malformed HELLO")
      this.#peerRoute = route
      const newNode = hello.node !== this.#peerNode
      this.#peerNode = hello.node
      this.emit("hello", hello)
      this.#apply(this.#state.peer(hello, now))
      // A new process of the peer has not heard this node's HELLO, and its ROUTER drops
      // everything else from this DEALER until it does: say HELLO again.
      if (newNode) this.hello()
      return
    }
    if (this.#peerRoute === undefined || !route.equals(this.#peerRoute))
      return this.#drop("a message from a connection without HELLO")
    switch (byte) {
      case PAIR_COMMAND.HEARTBEAT: {
        const report = readReport(rest[0])
        if (report === undefined) return this.#drop("a malformed HEARTBEAT")
        this.#apply(this.#state.peer(report, now))
        return
      }
      case PAIR_COMMAND.RECORDS: {
        const batch = readRecords(rest[0], rest[1])
        if (batch === undefined) return this.#drop("a malformed RECORDS")
        this.#apply(this.#state.heard(now))
        this.emit("records", batch)
        return
      }
      case PAIR_COMMAND.ACK: {
        const ack = readAck(rest[0])
        if (ack === undefined) return this.#drop("a malformed ACK")
        this.#apply(this.#state.heard(now))
        this.emit("ack", ack)
        return
      }
      case PAIR_COMMAND.COPY: {
        const copy = readCopy(rest[0], rest[1])
        if (copy === undefined) return this.#drop("a malformed COPY")
        this.#apply(this.#state.heard(now))
        this.emit("copy", copy)
        return
      }
      case PAIR_COMMAND.COPY_END: {
        const end = readCopyEnd(rest[0])
        if (end === undefined) return this.#drop("a malformed COPY_END")
        this.#apply(this.#state.heard(now))
        this.emit("copy:end", end)
        return
      }
      case PAIR_COMMAND.HANDOVER: {
        const handover = readHandover(rest[0], rest[1])
        if (handover === undefined) return this.#drop("a malformed HANDOVER")
        this.#apply(this.#state.heard(now))
        this.emit("handover", handover)
        return
      }
      case PAIR_COMMAND.HANDED: {
        const handed = readHanded(rest[0])
        if (handed === undefined) return this.#drop("a malformed HANDED")
        this.#apply(this.#state.heard(now))
        this.emit("handed", handed)
        return
      }
      default:
        return this.#drop(`an unknown command 0x${byte.toString(16)}`)
    }
  }
}
