/**
 * Builds a journal of pending messages for the restart case of `bench/journal.ts`, in the format a
 * `Sender` reads: `LevelJournal.append` in batches of 10 000 (sync false, then closed cleanly),
 * ids from `IdGenerator`, exactly what a sender writes for `send()`.
 *
 * argv: journal directory, count, payload size. IPC to the parent: `{ type: "built", ms, pending }`.
 * Exits when done, and when the IPC channel closes.
 */
import { randomBytes } from "node:crypto"
import { IdGenerator, LevelJournal, type JournalEntry } from "../../lib/index.js"

const [dir, countArg, sizeArg] = process.argv.slice(2)
const count = Number(countArg)
const size = Number(sizeArg)
const PER_BATCH = 10_000

process.on("disconnect", () => process.exit(0))
const start = performance.now()
const journal = new LevelJournal(dir ?? "")
await journal.open()
const ids = new IdGenerator(await journal.lastId())
// Random payloads, 1024 of them cycled: as incompressible for LevelDB as real data (see journal.ts).
const payloads = Array.from({ length: 1024 }, () => randomBytes(size))
for (let done = 0; done < count;) {
  const batch: JournalEntry[] = []
  const enqueuedAt = Date.now()
  for (const end = Math.min(count, done + PER_BATCH); done < end; done++)
    batch.push({
      id: ids.next(),
      payload: payloads[done % 1024] as Buffer,
      attempts: 0,
      enqueuedAt,
    })
  await journal.append(batch, { sync: false })
}
const { pending } = await journal.stats()
await journal.close()
process.send?.({ type: "built", ms: performance.now() - start, pending }, () => process.exit(0))
