/**
 * The decision logic of a sender pair: the Binary Star state machine of the ZeroMQ Guide
 * (chapter 4, "High-Availability Pair", bstarsrv.c), with the client vote cast by workers and
 * the Guide's fatal "dual masters" / "dual slaves" resolved instead of aborting (docs/pair.md,
 * section 2). Pure logic: no sockets, no timers; the time is passed in with every input.
 */
import { assertNonNegativeInt, assertOneOf, assertPositiveInt } from "../validate.js"

/** Which node of the pair this is: the primary wins a cold start and breaks ties. */
export type PairRole = "primary" | "backup"

/** `primary` and `backup` are the undecided states of a starting node. */
export type PairStateName = "primary" | "backup" | "active" | "passive"

/** What the peer says of itself in a HELLO or HEARTBEAT. */
export interface PeerReport {
  role: PairRole
  state: PairStateName
  epoch: number
}

/** Why a node became active. */
export type ActiveReason =
  /** A starting primary heard a starting backup. */
  | "peer-backup"
  /** A passive heard its peer restart: it holds the current journal. */
  | "peer-restarted"
  /** A passive got a vote while its peer was silent. */
  | "failover"
  /** A starting node got a vote while its peer was silent since its start. */
  | "alone"
  /** Both were passive; this one ranks higher. */
  | "dual-passive"

/** Why a node became passive. */
export type PassiveReason =
  /** It heard an active peer while starting. */
  | "peer-active"
  /** Both were active; the peer ranks higher. */
  | "dual-active"

/** What the transport must do or report after an input. */
export type PairOutput =
  | { type: "active"; epoch: number; reason: ActiveReason }
  | { type: "passive"; epoch: number; reason: PassiveReason }
  /** The peer was heard after a silence of `timeout` or more (or for the first time). */
  | { type: "peer:alive" }
  /** The peer has been silent for `timeout`. */
  | { type: "peer:lost" }
  /** A vote that changed nothing: the peer is alive, or this node is active already. */
  | { type: "vote:rejected"; reason: "peer-alive" | "active" }
  /** Both nodes are configured with the same role: nothing the peer says moves this node. */
  | { type: "conflict"; reason: "same-role" }

export interface PairStateOptions {
  role: PairRole
  /** Silence (ms) after which the peer is presumed dead. */
  timeout: number
  /** The epoch this node last knew (kept across restarts). @defaultValue 0 */
  epoch?: number
  /** The time of the start: the peer is given `timeout` from here before it can be lost. */
  now: number
  /**
   * A vote that came while the peer was still heard is held this long (ms): the node acts on it
   * at the `tick()` that finds the peer silent, instead of waiting for the worker's next vote.
   * A worker votes once per heartbeat interval anyway, so a hold of one interval decides as the
   * next vote would, only sooner. @defaultValue 0 (no hold)
   */
  voteHold?: number
}

const ROLES: readonly PairRole[] = ["primary", "backup"]
const STATES: readonly PairStateName[] = ["primary", "backup", "active", "passive"]

/**
 * The Binary Star state machine of one node. Inputs: `peer()` (a HELLO or HEARTBEAT),
 * `heard()` (any other message of the peer), `vote()` (a worker's VOTE), `tick()` (the clock);
 * each returns what changed, in order.
 *
 * Invariants: silence alone never changes the state; an active node becomes passive only on
 * hearing an active peer that ranks higher; a node becomes active without its peer's word only
 * on a vote that comes after the peer has been silent for `timeout`.
 */
export class PairState {
  readonly role: PairRole
  readonly timeout: number
  #state: PairStateName
  #epoch: number
  #lastHeard: number
  #peer: "unknown" | "alive" | "lost" = "unknown"
  #peerReport: PeerReport | undefined
  readonly #voteHold: number
  /** The time of the latest vote rejected because the peer was heard (see `voteHold`). */
  #heldVote: number | undefined

  constructor(options: PairStateOptions) {
    assertOneOf("role", options.role, ROLES)
    assertPositiveInt("timeout", options.timeout)
    const epoch = options.epoch ?? 0
    assertNonNegativeInt("epoch", epoch)
    if (typeof options.now !== "number" || !Number.isFinite(options.now))
      throw new TypeError(`'now' must be a finite number, got ${String(options.now)}`)
    this.role = options.role
    this.timeout = options.timeout
    this.#state = options.role
    this.#epoch = epoch
    this.#lastHeard = options.now
    this.#voteHold = options.voteHold ?? 0
    assertNonNegativeInt("voteHold", this.#voteHold)
  }

  /** The current state. */
  get state(): PairStateName {
    return this.#state
  }

  /** True in the one state that takes sends and dispatches. */
  get active(): boolean {
    return this.#state === "active"
  }

  /** This node's epoch: its term as active, or the highest it learnt from an active peer. */
  get epoch(): number {
    return this.#epoch
  }

  /** What is known of the peer: never heard since the start, heard within `timeout`, or lost. */
  get peerStatus(): "unknown" | "alive" | "lost" {
    return this.#peer
  }

  /** The peer's last HELLO or HEARTBEAT. */
  get lastPeer(): PeerReport | undefined {
    return this.#peerReport
  }

  /** When the peer will have been silent for `timeout`, unless heard before. */
  get silentAt(): number {
    return this.#lastHeard + this.timeout
  }

  /** True when the peer has been silent for `timeout` or more at `now`. */
  peerSilent(now: number): boolean {
    return now - this.#lastHeard >= this.timeout
  }

  /** The peer's HELLO or HEARTBEAT, with its role, state and epoch. */
  peer(report: PeerReport, now: number): PairOutput[] {
    assertOneOf("report.role", report.role, ROLES)
    assertOneOf("report.state", report.state, STATES)
    assertNonNegativeInt("report.epoch", report.epoch)
    const out = this.heard(now)
    this.#peerReport = { ...report }
    if (report.role === this.role) {
      out.push({ type: "conflict", reason: "same-role" })
      return out
    }
    const peerState = report.state
    switch (this.#state) {
      case "primary":
        if (peerState === "backup") this.#activate("peer-backup", report.epoch, out)
        else if (peerState === "active") this.#passivate("peer-active", report.epoch, out)
        // A passive peer becomes active on hearing this node start: wait for its word.
        break
      case "backup":
        if (peerState === "active") this.#passivate("peer-active", report.epoch, out)
        // A starting or passive primary decides first: wait for it to be active.
        break
      case "active":
        if (peerState === "active" && this.#ranksBelow(report)) {
          this.#passivate("dual-active", report.epoch, out)
        }
        break
      case "passive":
        if (peerState === "primary" || peerState === "backup") {
          this.#activate("peer-restarted", report.epoch, out)
        } else if (peerState === "passive" && !this.#ranksBelow(report)) {
          this.#activate("dual-passive", report.epoch, out)
        } else if (peerState === "active") {
          this.#epoch = Math.max(this.#epoch, report.epoch)
        }
        break
    }
    return out
  }

  /** Any other message from the peer (records, acks): it is alive. */
  heard(now: number): PairOutput[] {
    this.#lastHeard = Math.max(this.#lastHeard, now)
    // A held vote counts only if the peer falls silent without a word after it.
    if (this.#heldVote !== undefined && this.#heldVote < now) this.#heldVote = undefined
    if (this.#peer === "alive") return []
    this.#peer = "alive"
    return [{ type: "peer:alive" }]
  }

  /** A worker's vote: it has had no live session with an active sender for a liveness window. */
  vote(now: number): PairOutput[] {
    const out = this.tick(now)
    if (this.#state === "active") {
      out.push({ type: "vote:rejected", reason: "active" })
    } else if (!this.peerSilent(now)) {
      if (this.#voteHold > 0) this.#heldVote = now
      out.push({ type: "vote:rejected", reason: "peer-alive" })
    } else {
      this.#activate(this.#state === "passive" ? "failover" : "alone", 0, out)
    }
    return out
  }

  /**
   * The clock: reports the peer lost once it has been silent for `timeout`, and acts on a held
   * vote (see `voteHold`) that is still recent then.
   */
  tick(now: number): PairOutput[] {
    const out: PairOutput[] = []
    if (this.#peer !== "lost" && this.peerSilent(now)) {
      this.#peer = "lost"
      out.push({ type: "peer:lost" })
    }
    const held = this.#heldVote
    if (held !== undefined && this.peerSilent(now)) {
      this.#heldVote = undefined
      if (now - held <= this.#voteHold && this.#state !== "active")
        this.#activate(this.#state === "passive" ? "failover" : "alone", 0, out)
    }
    return out
  }

  /** Both in one state: the lower `(epoch, primary first)` steps down (or stays passive). */
  #ranksBelow(peer: PeerReport): boolean {
    if (this.#epoch !== peer.epoch) return this.#epoch < peer.epoch
    return this.role === "backup"
  }

  #activate(reason: ActiveReason, peerEpoch: number, out: PairOutput[]): void {
    this.#epoch = Math.max(this.#epoch, peerEpoch, this.#peerReport?.epoch ?? 0) + 1
    this.#state = "active"
    out.push({ type: "active", epoch: this.#epoch, reason })
  }

  #passivate(reason: PassiveReason, peerEpoch: number, out: PairOutput[]): void {
    this.#epoch = Math.max(this.#epoch, peerEpoch)
    this.#state = "passive"
    out.push({ type: "passive", epoch: this.#epoch, reason })
  }
}
