/**
 * Per-key order: messages sent with the same `key` are processed one at a time, in the order they
 * became ready (send order; a delayed one when it falls due), across all workers. The gate keeps,
 * for each key with messages in the window, those messages in that order; only the first of them
 * (the key's head) may be dispatched. A later one taken from the ready queue is parked here until the head is done (acked,
 * dead-lettered, expired or cancelled); a head that fails and waits for its retry keeps the key.
 *
 * With `keyOnDead: "hold"`, a key whose head is dead-lettered stays held: its other messages wait
 * (parked) until that dead letter is replayed.
 */
import type { Journal } from "../../../lib/journal/types.js"
import type { Message } from "./message.js"

export type KeyOnDead = "continue" | "hold"

export class KeyGate {
  /** The messages of each key in the window, oldest first. */
  readonly #keys = new Map<string, Message[]>()
  /** Keys held by a dead letter (`keyOnDead: "hold"`). */
  readonly #held = new Set<string>()
  #parked = 0

  /** Messages parked behind their key's head. */
  get parked(): number {
    return this.#parked
  }

  /** Keys with messages in the window (for tests of bounded memory). */
  get size(): number {
    return this.#keys.size
  }

  /** Keys held by a dead letter. */
  get heldKeys(): number {
    return this.#held.size
  }

  /**
   * A keyed message joins its key, behind the others (sent, paged in, fallen due), or ahead of them
   * with `first` (a replayed dead letter that held its key: nothing of the key is in flight).
   */
  enter(m: Message, first = false): void {
    const key = m.key as string
    const list = this.#keys.get(key)
    if (list === undefined) this.#keys.set(key, [m])
    else if (first) list.unshift(m)
    else list.push(m)
  }

  /**
   * True when `m` may be dispatched now: it has no key, or it is its key's head and the key is
   * not held. Else the caller parks it (`park()`).
   */
  mayGo(m: Message): boolean {
    if (m.key === undefined) return true
    if (this.#held.has(m.key)) return false
    return this.#keys.get(m.key)?.[0] === m
  }

  park(m: Message): void {
    m.state = "parked"
    this.#parked++
  }

  /** A parked message leaves without being released (cancelled, expired). */
  unpark(m: Message): void {
    if (m.state === "parked") this.#parked--
  }

  /**
   * A keyed message is done (acked, dead, expired, cancelled): it leaves its key. Returns the new
   * head when it was parked (the caller makes it ready again), else undefined. `hold` keeps the key
   * blocked (a dead letter under `keyOnDead: "hold"`).
   */
  leave(m: Message, hold = false): Message | undefined {
    const key = m.key as string
    const list = this.#keys.get(key)
    if (list === undefined) return undefined
    const i = list.indexOf(m)
    if (i >= 0) list.splice(i, 1)
    if (hold) this.#held.add(key)
    if (list.length === 0) {
      this.#keys.delete(key)
      return undefined
    }
    if (i !== 0 || this.#held.has(key)) return undefined
    return this.#wake(list[0] as Message)
  }

  /** Holds `key` (a dead letter of it found at open, under `keyOnDead: "hold"`). */
  hold(key: string): void {
    this.#held.add(key)
  }

  /** A held key's dead letter was replayed: its head may go again. Returns it when parked. */
  release(key: string): Message | undefined {
    if (!this.#held.delete(key)) return undefined
    const head = this.#keys.get(key)?.[0]
    return head === undefined ? undefined : this.#wake(head)
  }

  /** True when `key` is held by a dead letter. */
  isHeld(key: string): boolean {
    return this.#held.has(key)
  }

  /** Every parked message (a sweep for expired ones). */
  forEachParked(visit: (m: Message) => void): void {
    for (const list of this.#keys.values()) for (const m of list) if (m.state === "parked") visit(m)
  }

  #wake(head: Message): Message | undefined {
    if (head.state !== "parked") return undefined
    this.#parked--
    return head
  }
}

/** `keyOnDead: "hold"`: the keys of the dead letters in the journal (at open) stay held. */
export async function holdDeadLetterKeys(journal: Journal, gate: KeyGate): Promise<void> {
  let after: string | undefined
  for (;;) {
    const page = await journal.dead({ ...(after === undefined ? {} : { after }), limit: 1000 })
    for (const d of page) if (d.key !== undefined) gate.hold(d.key)
    if (page.length < 1000) return
    after = page[page.length - 1]?.id
  }
}
