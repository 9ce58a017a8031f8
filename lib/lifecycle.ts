import { PirateError, closedError } from "./errors.js"

/**
 * `"new"` until `open()` (and again after an open that failed, which may be retried), then
 * `"opening"`, `"open"`, `"closing"`, `"closed"`.
 */
export type Status = "new" | "opening" | "open" | "closing" | "closed"

/**
 * Open/close bookkeeping shared by every role and journal: `open()` and `close()` are idempotent
 * and safe to call concurrently; closing while opening waits for the open to settle first; a
 * failed open leaves the object `"new"`, so that `open()` may be called again (once the other
 * process has let go of the port or the journal); `open()` after `close()` rejects with
 * `PIRATE_CLOSED`.
 */
export class Lifecycle {
  #status: Status = "new"
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  readonly #name: string

  /** @param name - what the errors call the object, e.g. "the sender" */
  constructor(name: string) {
    this.#name = name
  }

  get status(): Status {
    return this.#status
  }

  /** True once `close()` was called (the status may still be `"opening"` or `"open"` briefly). */
  get closeRequested(): boolean {
    return this.#closing !== undefined
  }

  /** Runs `run` once, however often it is called, until it fails; then it may run again. */
  open(run: () => Promise<void>): Promise<void> {
    if (this.#closing) return Promise.reject(closedError(this.#name))
    if (this.#opening) return this.#opening
    const opening = (async () => {
      this.#status = "opening"
      try {
        await run()
        this.#status = "open"
      } catch (err) {
        this.#status = "new"
        throw err
      }
    })()
    this.#opening = opening
    // Registered before any caller's handler: a caller that retries at once gets a new attempt.
    opening.catch(() => {
      if (this.#opening === opening) this.#opening = undefined
    })
    return opening
  }

  /**
   * Runs `run` once, after an open in progress has settled: it must release whatever was opened,
   * and cope with nothing having been opened (`close()` before `open()`, or after a failed one).
   */
  close(run: () => Promise<void>): Promise<void> {
    return (this.#closing ??= (async () => {
      await this.#opening?.catch(() => undefined)
      this.#status = "closing"
      try {
        await run()
      } finally {
        this.#status = "closed"
      }
    })())
  }

  /** Waits for an open in progress to settle; then throws unless open (see {@link assertOpen}). */
  async ready(): Promise<void> {
    if (this.#status === "opening") await this.#opening?.catch(() => undefined)
    this.assertOpen()
  }

  /** Throws `PIRATE_CLOSED` once `close()` was called, `PIRATE_NOT_OPEN` unless open. */
  assertOpen(): void {
    if (this.#status === "open" && !this.#closing) return
    if (this.#closing) throw closedError(this.#name)
    throw new PirateError(
      "PIRATE_NOT_OPEN",
      `${this.#name} is not open; call open() first (or use the static open())`,
    )
  }
}
