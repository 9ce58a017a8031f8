import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, onTestFinished, test } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { pairNode } from "../fixtures/pair-replication-node.js"
import { journalContents } from "../helpers/journal-contents.js"
import { forkFixture, type Child } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"
import { entry, id } from "../suites/journal.js"

const HEARTBEAT = 50

test("a SIGKILLed passive restarted on its journal catches up and holds everything", async () => {
  const dirA = await mkdtemp(join(tmpdir(), "pirate-pair-crash-a-"))
  const dirB = await mkdtemp(join(tmpdir(), "pirate-pair-crash-b-"))
  onTestFinished(() => rm(dirA, { recursive: true, force: true }))
  onTestFinished(() => rm(dirB, { recursive: true, force: true }))
  const journal = new LevelJournal(dirA)
  await journal.open()
  onTestFinished(() => journal.close())
  const a = await pairNode({
    role: "primary",
    journal,
    heartbeatInterval: HEARTBEAT,
    dir: dirA,
    repl: { replicated: true, whenAlone: "local" },
  })
  onTestFinished(() => a.close())

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
