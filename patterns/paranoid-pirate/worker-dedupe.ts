/** `Worker`'s `dedupe`: a message that already completed here is answered with its recorded reply. */
import { DedupeStore, type DedupeOptions } from "../../lib/journal/dedupe.js"

export class DedupeRuns {
  readonly #store: DedupeStore
  /** Runs in progress by key, so that a redelivery while the first run is going joins it. */
  readonly #inProgress = new Map<string, Promise<Buffer>>()

  constructor(options: DedupeOptions | string) {
    this.#store = new DedupeStore(options)
  }

  open(): Promise<void> {
    return this.#store.open()
  }

  close(): Promise<void> {
    return this.#store.close()
  }

  /**
   * The reply of the message `key` names: the recorded one when it completed here before, the
   * one of its run in progress, else `run()`'s, recorded. `duplicate()` is called when the handler
   * did not run for it.
   */
  async complete(key: string, run: () => Promise<Buffer>, duplicate: () => void): Promise<Buffer> {
    const running = this.#inProgress.get(key)
    if (running) {
      duplicate()
      return running
    }
    const store = this.#store
    const first = (async () => {
      const recorded = await store.get(key)
      if (recorded !== undefined) {
        duplicate()
        return recorded
      }
      const reply = await run()
      await store.put(key, reply)
      return reply
    })()
    this.#inProgress.set(key, first)
    try {
      return await first
    } finally {
      this.#inProgress.delete(key)
    }
  }
}
