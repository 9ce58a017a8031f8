/**
 * The worker's vote for a sender pair (docs/pair.md section 5): a worker that has had no live
 * session with an active sender for a whole liveness window tells one sender of the pair so
 * (VOTE), once per heartbeat interval, until it has a live session with an active again. The
 * passive takes over on a vote only once its peer has been silent too, so a cut of the pair link
 * alone, which leaves every worker with its active, never gives two actives (section 2.5).
 */
import type { PairStateName } from "../../lib/pair/pair-state.js"

/** What the vote needs to know of one session with a sender. */
export interface VoteSession {
  readonly endpoint: string
  /**
   * The sender's state while the session is live (heard from, not lost): its WELCOME's or latest
   * PAIR's `pair`, `"active"` for a sender not in a pair; undefined while not live.
   */
  senderState(): PairStateName | undefined
}

export interface VoteHost<S extends VoteSession> {
  /** The sessions in `connect` order (the order breaks ties between candidates). */
  sessions(): readonly S[]
  /** Sends VOTE on the session. */
  vote(s: S): void
  heartbeatInterval: number
  liveness: number
  now?: () => number
}

/** Candidates for a vote, by preference: a passive, else a starting primary, else a backup. */
const PREFERENCE: readonly PairStateName[] = ["passive", "primary", "backup"]

/**
 * Decides when to vote and for whom. The worker calls {@link update} whenever a session's state
 * may have changed (WELCOME, PAIR, a session lost); a timer covers the passing of time (the end
 * of the liveness window, then each heartbeat interval).
 */
export class Voter<S extends VoteSession> {
  readonly #h: VoteHost<S>
  readonly #now: () => number
  readonly #window: number
  /** Since when the worker has had no live session with an active (`now()` time). */
  #since = 0
  #hasActive = false
  #lastVote = -Infinity
  #timer: NodeJS.Timeout | undefined
  #running = false

  constructor(host: VoteHost<S>) {
    this.#h = host
    this.#now = host.now ?? (() => performance.now())
    this.#window = host.heartbeatInterval * host.liveness
  }

  /** The worker started: the liveness window runs from now. */
  start(): void {
    this.#running = true
    this.#since = this.#now()
    this.#hasActive = false
    this.update()
  }

  /** The worker is closing: no more votes. */
  stop(): void {
    this.#running = false
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /**
   * Re-reads the sessions' states; votes when one is due, and arms the timer for the next.
   * @param silentSince - a session was just lost to silence: the time it was last heard from
   *   (`now()` time). Should it have been the last with an active, the window runs from then,
   *   not from the moment the silence was noticed, which is itself a liveness window later: the
   *   passive's `pair.timeout` runs from the active's last word too.
   */
  update(silentSince?: number): void {
    if (!this.#running) return
    const now = this.#now()
    const sessions = this.#h.sessions()
    const hasActive = sessions.some((s) => s.senderState() === "active")
    if (hasActive !== this.#hasActive) {
      this.#hasActive = hasActive
      // The window runs from the loss (or demotion) of the last session with an active.
      if (!hasActive) this.#since = Math.min(now, silentSince ?? now)
    }
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (hasActive) return
    const due = Math.max(this.#since + this.#window, this.#lastVote + this.#h.heartbeatInterval)
    if (now < due) return this.#arm(due - now)
    const target = choose(sessions)
    // No candidate: a WELCOME, PAIR or loss calls update() again.
    if (!target) return
    this.#lastVote = now
    this.#h.vote(target)
    this.#arm(this.#h.heartbeatInterval)
  }

  #arm(delay: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.update()
    }, Math.ceil(delay))
    this.#timer.unref()
  }
}

/** The sender to vote for: the first live one in the best state of {@link PREFERENCE}. */
function choose<S extends VoteSession>(sessions: readonly S[]): S | undefined {
  for (const state of PREFERENCE) for (const s of sessions) if (s.senderState() === state) return s
  return undefined
}
