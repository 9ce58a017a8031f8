/**
 * What the two sides of a pair's replication (`ReplicationActive`, `ReplicationPassive`) need
 * of the `PairReplication` that coordinates them: the link, the node's own journal, the pair
 * file, the current role and term, and where drops and errors go.
 */
import type { Journal } from "../journal/types.js"
import type { PairLink } from "./link.js"
import type { PairFileStore } from "./pair-file.js"

export interface ReplicationHost {
  readonly link: PairLink
  /** The node's own journal. */
  readonly journal: Journal
  readonly pairFile: PairFileStore
  role(): "idle" | "active" | "passive"
  /** Grows at each start and stop: a loop of an older term ends. */
  term(): number
  /** The error given to `stop()`, until the next start. */
  stopError(): Error | undefined
  /** Throws the stop error (or `PIRATE_CLOSED`) when the term is no longer `term`. */
  check(term: number): void
  /** Counts a malformed or stale input, dropped. */
  drop(reason: string): void
  /** An error with no caller: the `error` event. */
  error(err: unknown): void
}
