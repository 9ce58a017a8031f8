import { assertPositiveInt } from "./validate.js"

export interface LivenessOptions {
  /** Heartbeat period (ms). @defaultValue 1000 */
  heartbeatInterval?: number
  /** Heartbeats that may be missed before the peer is presumed dead. @defaultValue 3 */
  liveness?: number
}

export const LIVENESS_DEFAULTS = Object.freeze({
  heartbeatInterval: 1000,
  liveness: 3,
}) satisfies Required<LivenessOptions>

/**
 * Tracks whether a peer is alive, as in the Paranoid Pirate Protocol: any traffic counts as a
 * heartbeat; a peer silent for `liveness × heartbeatInterval` ms is dead. Pure logic with an
 * injectable clock, so it can be tested without timers.
 */
export class Liveness {
  readonly heartbeatInterval: number
  readonly liveness: number
  readonly #now: () => number
  #lastSeen: number
  #lastSent: number

  constructor(
    options: LivenessOptions = {},
    clock: { now: () => number } = { now: () => performance.now() },
  ) {
    const o = { ...LIVENESS_DEFAULTS, ...options }
    assertPositiveInt("heartbeatInterval", o.heartbeatInterval)
    assertPositiveInt("liveness", o.liveness)
    this.heartbeatInterval = o.heartbeatInterval
    this.liveness = o.liveness
    this.#now = clock.now
    this.#lastSeen = this.#now()
    this.#lastSent = this.#lastSeen
  }

  /** The silence (ms) after which the peer is dead. */
  get expiry(): number {
    return this.heartbeatInterval * this.liveness
  }

  /** Records traffic from the peer. */
  seen(): void {
    this.#lastSeen = this.#now()
  }

  /** Records traffic to the peer (so a heartbeat is due only after a quiet interval). */
  sent(): void {
    this.#lastSent = this.#now()
  }

  /** Milliseconds since the peer was last heard. */
  silence(): number {
    return this.#now() - this.#lastSeen
  }

  /** Heartbeats missed so far (whole intervals of silence). */
  missed(): number {
    return Math.floor(this.silence() / this.heartbeatInterval)
  }

  /** True once the peer has been silent for `liveness × heartbeatInterval`. */
  expired(): boolean {
    return this.silence() >= this.expiry
  }

  /** True when nothing was sent for a heartbeat interval. */
  heartbeatDue(): boolean {
    return this.#now() - this.#lastSent >= this.heartbeatInterval
  }
}
