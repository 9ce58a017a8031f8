import { mkdtemp, readdir, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, onTestFinished, test } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { PAIR_LOG_DIR } from "../../lib/pair/passive-log.js"
import { readPairFile } from "../../lib/pair/replication.js"
import { pairNode, type PairNode } from "../fixtures/pair-replication-node.js"
import { journalContents } from "../helpers/journal-contents.js"
import { forkFixture, type Child } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"
import { entry, id } from "../suites/journal.js"

const HEARTBEAT = 50

/**
 * The primary of a pair in this process, replicated durability, its LevelJournal in a temporary
 * directory; and a directory for the backup. The primary closes at the end of the test unless
 * `closeAtEnd` is set to false (the test closes it).
 */
async function primary(whenAlone: "wait" | "local"): Promise<{
  dirB: string
  journal: LevelJournal
  a: PairNode & { closeAtEnd: boolean }
}> {
  const dirA = await mkdtemp(join(tmpdir(), "pirate-pair-crash-a-"))
  const dirB = await mkdtemp(join(tmpdir(), "pirate-pair-crash-b-"))
  onTestFinished(() => rm(dirA, { recursive: true, force: true }))
  onTestFinished(() => rm(dirB, { recursive: true, force: true }))
  const journal = new LevelJournal(dirA)
  await journal.open()
  onTestFinished(() => journal.close())
  const node = await pairNode({
    role: "primary",
    journal,
    heartbeatInterval: HEARTBEAT,
    dir: dirA,
    repl: { replicated: true, whenAlone },
  })
  const a = Object.assign(node, { closeAtEnd: true })
  onTestFinished(() => (a.closeAtEnd ? a.close() : undefined))
  return { dirB, journal, a }
}

test("a SIGKILLed passive restarted on its journal catches up and holds everything", async () => {
  const { dirB, journal, a } = await primary("local")

  const start = (bind?: string): Child =>
    forkFixture("pair-replica.ts", [
      a.link.endpoint ?? "",
      dirB,
      String(HEARTBEAT),
      ...(bind === undefined ? [] : [bind]),
    ])
  const applied = (child: Child, seq: number): Promise<unknown> =>
    child.waitFor((m) => (m["stats"] as { applied: number } | undefined)?.applied === seq, 8000)

  let child = start()
  const ready = await child.waitFor((m) => m["type"] === "ready")
  const bind = String(ready["endpoint"])
  a.link.connect(bind)
  await waitFor(() => expect(a.repl.replicated).toBe(true))

  let n = 0
  const write = async (count: number): Promise<void> => {
    for (let k = 0; k < count; k++) {
      n += 2
      await a.repl.journal.append([entry(n)], { sync: false })
      if (n % 6 === 0) await a.repl.journal.remove([id(n - 2)])
    }
  }
  await write(200)
  await applied(child, a.repl.stats().applied + a.repl.stats().lag)
  await child.kill("SIGKILL")
  // Alone ("local"): the writes go on.
  await write(100)

  child = start(bind)
  await waitFor(() => expect(a.repl.stats()).toMatchObject({ replicated: true, lag: 0 }), {
    timeout: 8000,
  })
  await write(20)
  await waitFor(() => expect(a.repl.stats()).toMatchObject({ replicated: true, lag: 0 }))
  const asked = child.waitFor((m) => m["type"] === "contents")
  child.process.send({ type: "contents" })
  const got = await asked
  const mine = await journalContents(journal)
  const entries = (c: Record<string, unknown>): unknown => [c["pending"], c["dead"], c["scheduled"]]
  expect(entries(got["contents"] as Record<string, unknown>)).toEqual(entries(mine))
  expect((got["stats"] as { applied: number }).applied).toBe(a.repl.stats().applied)
  expect(child.messages.filter((m) => m["type"] === "error")).toEqual([])
  expect(a.errors).toEqual([])
})

test("a passive SIGKILLed with acked records only in its log has them in its journal after a restart, with no active to ask", async () => {
  const { dirB, journal, a } = await primary("wait")
  a.closeAtEnd = false
  // The passive holds what it logged for a minute: its journal gets none of it before the kill.
  const child = forkFixture("pair-replica.ts", [
    a.link.endpoint ?? "",
    dirB,
    String(HEARTBEAT),
    "",
    "60000",
  ])
  const ready = await child.waitFor((m) => m["type"] === "ready")
  a.link.connect(String(ready["endpoint"]))
  await waitFor(() => expect(a.repl.replicated).toBe(true))

  // Replicated: each write resolves once the passive acked it (logged, not in its journal).
  for (let n = 2; n <= 400; n += 2) {
    await a.repl.journal.append([entry(n)], { sync: false })
    if (n % 6 === 0) await a.repl.journal.remove([id(n - 2)])
  }
  await a.repl.journal.update([{ id: id(400), attempts: 1, lastError: "slow" }])
  // An update does not wait for the passive: its ack comes a moment later.
  await waitFor(() => expect(a.repl.stats().lag).toBe(0))
  const acked = a.repl.stats().applied
  await child.kill("SIGKILL")
  const held = await readPairFile(dirB)
  expect(held?.applied ?? 0).toBeLessThan(acked)
  expect(await readdir(join(dirB, PAIR_LOG_DIR))).not.toEqual([])
  // The active is gone too: nobody can send the passive what it acked.
  const want = await journalContents(journal)
  await a.close()

  const jb = new LevelJournal(dirB)
  await jb.open()
  onTestFinished(() => jb.close())
  const b = await pairNode({ role: "backup", journal: jb, heartbeatInterval: HEARTBEAT, dir: dirB })
  onTestFinished(() => b.close())
  await b.repl.flush() // opens the replication: the log goes to the journal
  const got = await journalContents(jb)
  const entries = (c: Record<string, unknown>): unknown => [c["pending"], c["dead"], c["scheduled"]]
  expect(entries(got)).toEqual(entries(want))
  expect((await readPairFile(dirB))?.applied).toBe(acked)
  expect(await readdir(join(dirB, PAIR_LOG_DIR))).toEqual([])
  expect(b.errors).toEqual([])
})
