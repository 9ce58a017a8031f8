/**
 * Producer-side idempotency: `send(payload, { id })`. A second send with a send id whose message
 * is pending, in flight, dead, or was acked within `dedupeWindow` enqueues nothing and resolves
 * with that message's id. With a journal that keeps send ids (`Journal.dedupeLookup`), the record
 * is written in the same write as the message, so it outlives a crash of the sender: a producer
 * that is unsure what it sent before the crash sends it again. Without one, the records live in
 * memory for the life of the sender.
 */
import type { DedupeRecord, Journal } from "../../../lib/journal/types.js"

/** The journal's send-id records: its optional methods, all present. */
type DedupeStore = Required<Pick<Journal, "dedupeLookup" | "dedupeForget">>

/** The store when the journal keeps send ids and outlives the process; else undefined. */
function dedupeStore(journal: Journal): DedupeStore | undefined {
  const j = journal as Partial<DedupeStore> & Journal
  if (!j.persistent || !j.dedupeLookup || !j.dedupeForget) return undefined
  return j as DedupeStore
}

/** Records in memory are swept at most this often (and at least once per window). */
const SWEEP_MS = 60_000

export class SendIds {
  readonly #store: DedupeStore | undefined
  readonly #window: number
  /** Sends with a send id that are being looked up or accepted: a second one joins the first. */
  readonly #inProgress = new Map<string, Promise<string>>()
  /**
   * Send ids of messages accepted and not yet written (a journal that keeps send ids), or of every
   * message (no such journal): the message id, and when it was acked.
   */
  readonly #memory = new Map<string, DedupeRecord>()
  #timer: NodeJS.Timeout | undefined
  #sweeping: Promise<void> | undefined
  readonly #error: (err: Error) => void

  constructor(journal: Journal, window: number, error: (err: Error) => void) {
    this.#store = dedupeStore(journal)
    this.#window = window
    this.#error = error
  }

  /** True when the journal keeps the records (they survive a restart). */
  get durable(): boolean {
    return this.#store !== undefined
  }

  /** Records in memory and sends in progress (tests of bounded memory). */
  sizes(): Record<string, number> {
    return { sendIdsInProgress: this.#inProgress.size, sendIdsInMemory: this.#memory.size }
  }

  /**
   * Sends once per send id: `send()` enqueues the message (and resolves with its id once as
   * durable as configured) unless the send id names a message that is pending, dead or was acked
   * within the window; then resolves with that message's id, and `duplicate()` is told.
   */
  once(dedupeId: string, send: () => Promise<string>, duplicate: () => void): Promise<string> {
    const running = this.#inProgress.get(dedupeId)
    if (running) {
      duplicate()
      return running
    }
    const p = this.#once(dedupeId, send, duplicate)
    this.#inProgress.set(dedupeId, p)
    const done = (): void => {
      if (this.#inProgress.get(dedupeId) === p) this.#inProgress.delete(dedupeId)
    }
    p.then(done, done)
    return p
  }

  async #once(
    dedupeId: string,
    send: () => Promise<string>,
    duplicate: () => void,
  ): Promise<string> {
    const known = await this.#lookup(dedupeId)
    if (known !== undefined && (known.ackedAt === undefined || known.ackedAt >= this.#since())) {
      duplicate()
      return known.id
    }
    return send()
  }

  async #lookup(dedupeId: string): Promise<DedupeRecord | undefined> {
    const here = this.#memory.get(dedupeId)
    if (here !== undefined || this.#store === undefined) return here
    const [found] = await this.#store.dedupeLookup([dedupeId])
    return found
  }

  /** Acked before this is forgotten. */
  #since(): number {
    return Date.now() - this.#window
  }

  /** A message with a send id was accepted (before it is written). */
  accepted(dedupeId: string, id: string): void {
    this.#memory.set(dedupeId, { id })
    this.#arm()
  }

  /** Its write is done (`ok`) or failed: the journal has the record now, or nobody does. */
  written(dedupeId: string, ok: boolean): void {
    if (this.#store !== undefined || !ok) this.#memory.delete(dedupeId)
  }

  /** A message with a send id was acked, and the journal does not keep its record: kept here. */
  ackedInMemory(dedupeId: string): void {
    const r = this.#memory.get(dedupeId)
    if (r !== undefined) r.ackedAt = Date.now()
  }

  /** A message with a send id was cancelled: a later send with that id enqueues again. */
  forgetInMemory(dedupeId: string): void {
    this.#memory.delete(dedupeId)
  }

  /**
   * A message was cancelled whose send id is not known here (one due later, in the journal: the
   * journal forgets its record with it): forgets a record in memory that names it.
   */
  forgetMessage(id: string): void {
    for (const [dedupeId, r] of this.#memory)
      if (r.id === id) {
        this.#memory.delete(dedupeId)
        return
      }
  }

  /** Sweeps acked records past the window, in memory and in the journal, now and then. */
  #arm(): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(
      () => void this.sweep(),
      Math.max(1000, Math.min(SWEEP_MS, this.#window)),
    )
    this.#timer.unref()
  }

  /** Forgets what was acked before the window (also called at open). */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweep().finally(() => (this.#sweeping = undefined))
    return this.#sweeping
  }

  async #sweep(): Promise<void> {
    const before = this.#since()
    for (const [dedupeId, r] of this.#memory)
      if (r.ackedAt !== undefined && r.ackedAt < before) this.#memory.delete(dedupeId)
    if (this.#store === undefined) return
    try {
      await this.#store.dedupeForget(before)
    } catch (err) {
      this.#error(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** Starts the periodic sweep (a journal that keeps records: from open). */
  start(): void {
    if (this.#store !== undefined) this.#arm()
  }

  stop(): Promise<void> | undefined {
    clearInterval(this.#timer)
    this.#timer = undefined
    return this.#sweeping
  }
}
