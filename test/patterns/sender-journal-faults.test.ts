/**
 * A sender whose journal fails some writes after the sends resolved (the disk filled up while
 * workers acked): the acks that could not be written are kept and retried, the process does not
 * crash when nobody listens for `error`, and a restart redelivers nothing that was acked.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import type { DeadLetter, Journal, JournalEntry, JournalUpdate } from "../../lib/journal/types.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

const signal = (ms = 8000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

/** A LevelJournal whose next `failRemoves` calls of remove() fail as a full disk does. */
class FailingRemoves implements Journal {
  readonly persistent = true
  readonly #inner: LevelJournal
  failRemoves: number
  removeCalls = 0

  constructor(dir: string, failRemoves: number) {
    this.#inner = new LevelJournal(dir)
    this.failRemoves = failRemoves
  }

  async remove(ids: readonly string[]): Promise<void> {
    this.removeCalls++
    if (this.failRemoves > 0) {
      this.failRemoves--
      throw Object.assign(new Error("IO error: No space left on device"), { code: "ENOSPC" })
    }
    await this.#inner.remove(ids)
  }

  open(): Promise<void> {
    return this.#inner.open()
  }
  close(): Promise<void> {
    return this.#inner.close()
  }
  append(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void> {
    return this.#inner.append(entries, options)
  }
  update(updates: readonly JournalUpdate[]): Promise<void> {
    return this.#inner.update(updates)
  }
  bury(letters: readonly DeadLetter[]): Promise<void> {
    return this.#inner.bury(letters)
  }
  pending(o: { after?: string; until?: string; limit: number }): Promise<JournalEntry[]> {
    return this.#inner.pending(o)
  }
  dead(o?: { after?: string; limit?: number }): Promise<DeadLetter[]> {
    return this.#inner.dead(o)
  }
  replay(ids: readonly string[]): Promise<JournalEntry[]> {
    return this.#inner.replay(ids)
  }
  purgeDead(ids: readonly string[]): Promise<number> {
    return this.#inner.purgeDead(ids)
  }
  lastId(): Promise<string | undefined> {
    return this.#inner.lastId()
  }
  stats(): Promise<{ pending: number; dead: number }> {
    return this.#inner.stats()
  }
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-faults-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Collects what reaches the process's last-resort handlers while the test runs. */
function unhandled(): unknown[] {
  const seen: unknown[] = []
  const record = (err: unknown): void => void seen.push(err)
  process.on("unhandledRejection", record)
  process.on("uncaughtException", record)
  onTestFinished(() => {
    process.off("unhandledRejection", record)
    process.off("uncaughtException", record)
  })
  return seen
}

describe("Sender: journal writes that fail after the sends resolved", () => {
  it("retries acks it could not write, without an error listener; a restart redelivers nothing", async () => {
    const crashes = unhandled()
    const dir = await tempDir()
    const journal = new FailingRemoves(dir, 3)
    const sender = await openSender({ journal })
    expect(sender.listenerCount("error")).toBe(0)
    const handled: number[] = []
    await openWorker(sender.endpoint, { handler: (p) => void handled.push(p as number) })
    for (let i = 0; i < 20; i++) await sender.send(i)
    // drained() waits for the journal lanes too: every ack is written once it resolves.
    await sender.drained(signal())
    expect(journal.removeCalls).toBeGreaterThan(3)
    expect(journal.failRemoves).toBe(0)
    expect(crashes).toEqual([])
    expect(await journal.stats()).toMatchObject({ pending: 0 })
    await sender.close()

    const again = await openSender({ journal: dir })
    expect(again.stats()).toMatchObject({ ready: 0, backlog: 0 })
    expect(handled.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })

  it("tells a listener once per episode that acks could not be written, with PIRATE_JOURNAL_FULL", async () => {
    const dir = await tempDir()
    const journal = new FailingRemoves(dir, 2)
    const sender = await openSender({ journal })
    const errors: Error[] = []
    sender.on("error", (err) => errors.push(err))
    await openWorker(sender.endpoint, { handler: () => null })
    await sender.send("one")
    await sender.drained(signal())
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ code: "PIRATE_JOURNAL_FULL" })
    expect(await journal.stats()).toMatchObject({ pending: 0 })
  })
})
