import { expect, test } from "vitest"
import { MemoryJournal } from "../../lib/journal/memory.js"
import { journalSuite } from "../suites/journal.js"

journalSuite("MemoryJournal", async () => ({ journal: new MemoryJournal() }))

test("a dead letter's payload that is a small view of a larger buffer is kept as a copy of its own", async () => {
  const journal = new MemoryJournal()
  const scratch = Buffer.alloc(64 * 1024, 7)
  const payload = scratch.subarray(100, 356)
  const id = "0000000000000001"
  await journal.bury([{ id, payload, attempts: 3, enqueuedAt: 1, deadAt: 2, lastError: "x" }])
  const [dead] = await journal.dead({ limit: 10 })
  expect(dead?.payload.equals(payload)).toBe(true)
  expect(dead?.payload.buffer.byteLength).toBeLessThan(scratch.length)
  // A payload that is its buffer's own is kept as it is.
  const own = Buffer.alloc(256, 7)
  await journal.bury([
    { id: "0000000000000002", payload: own, attempts: 3, enqueuedAt: 1, deadAt: 2, lastError: "x" },
  ])
  const [, second] = await journal.dead({ limit: 10 })
  expect(second?.payload).toBe(own)
})
