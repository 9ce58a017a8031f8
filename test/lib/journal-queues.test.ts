/**
 * A message's queue and headers stay with it in the journal across a retry (`update()`), a dead
 * letter (`bury()`) and a replay (`replay()`), in both journals.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { MemoryJournal } from "../../lib/journal/memory.js"
import type { Journal } from "../../lib/journal/types.js"
import { entry, id, letter } from "../suites/journal.js"

async function level(): Promise<Journal> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-journal-queues-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return new LevelJournal(dir)
}

async function memory(): Promise<Journal> {
  return Promise.resolve(new MemoryJournal())
}

describe.each([
  ["LevelJournal", level],
  ["MemoryJournal", memory],
])("%s keeps queue and headers", (_, make) => {
  it("across update(), bury() and replay()", async () => {
    const journal = await make()
    await journal.open()
    onTestFinished(() => journal.close())
    const headers = { traceparent: "00-abc-def-01", k: "v" }
    await journal.append([entry(1, { queue: "resize", headers }), entry(2, { queue: "thumbs" })], {
      sync: false,
    })
    await journal.update([{ id: id(1), attempts: 2, lastError: "nack" }])
    expect((await journal.pending({ limit: 10 }))[0]).toMatchObject({
      id: id(1),
      attempts: 2,
      queue: "resize",
      headers,
    })
    await journal.bury([letter(entry(2, { queue: "thumbs", headers: { a: "b" } }), "dead")])
    expect(await journal.dead()).toEqual([
      expect.objectContaining({ id: id(2), queue: "thumbs", headers: { a: "b" } }),
    ])
    const replayed = await journal.replay([id(2)])
    expect(replayed).toEqual([
      expect.objectContaining({ id: id(2), queue: "thumbs", headers: { a: "b" } }),
    ])
    expect((await journal.pending({ limit: 10 }))[1]).toMatchObject({
      id: id(2),
      attempts: 0,
      queue: "thumbs",
      headers: { a: "b" },
    })
  })
})
