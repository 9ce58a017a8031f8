/**
 * The CLI's named queues: `pirate worker --queue NAME`, run as a user would (`node bin/pirate.js`)
 * against an in-process Sender, and `pirate journal … --queue NAME` on a journal with entries of
 * several queues.
 */
import { execFile } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it, onTestFinished } from "vitest"
import { UsageError } from "../../bin/cli.js"
import { command as journalCommand } from "../../bin/commands/journal.js"
import { command as workerCommand } from "../../bin/commands/worker.js"
import { LevelJournal } from "../../lib/journal/level.js"
import { journalStats } from "../helpers/journal-files.js"
import { openSender } from "../helpers/paranoid.js"
import { spawnLines } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"
import { entry, id, letter } from "../suites/journal.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const PIRATE = join(ROOT, "bin/pirate.js")
const FAST = ["--heartbeat-interval", "100", "--liveness", "3"]

interface Result {
  code: number
  stdout: string
  stderr: string
}

/** Runs `node bin/pirate.js ARGS` to completion. */
function pirate(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PIRATE, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-queues-ops-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

describe("pirate worker --queue", { timeout: 30_000 }, () => {
  it("takes only the messages of its queues", async () => {
    const sender = await openSender()
    const worker = spawnLines(
      process.execPath,
      [PIRATE, "worker", ...FAST, "--connect", sender.endpoint, "--queue", "b", "--echo"],
      { name: "pirate worker" },
    )
    await worker.waitForLine((l) => l.startsWith("worker ready "))
    expect(worker.lines[0]).toBe(`worker connect=${sender.endpoint} concurrency=1 queues=b`)
    await waitFor(() => expect(sender.stats({ queue: "b" }).workers).toBe(1))

    await sender.send("for a", { queue: "a" })
    await sender.send("for default")
    expect(await sender.request("for b", { queue: "b" })).toBe("for b")
    expect(sender.stats({ queue: "b" })).toMatchObject({ acked: 1, workers: 1 })
    expect(sender.stats({ queue: "a" })).toMatchObject({ ready: 1, acked: 0, workers: 0 })
    expect(sender.stats({ queue: "default" })).toMatchObject({ ready: 1, acked: 0, workers: 0 })
    await worker.kill("SIGTERM")
  })

  it("takes several queues, round robin", async () => {
    const sender = await openSender()
    const worker = spawnLines(
      process.execPath,
      [PIRATE, "worker", ...FAST, "-c", sender.endpoint, "-q", "x", "-q", "y", "--echo"],
      { name: "pirate worker" },
    )
    await worker.waitForLine((l) => l.startsWith("worker ready "))
    const replies = await Promise.all([
      sender.request(1, { queue: "x" }),
      sender.request(2, { queue: "y" }),
    ])
    expect(replies).toEqual([1, 2])
    await sender.send(3)
    expect(sender.stats({ queue: "default" })).toMatchObject({ ready: 1, workers: 0 })
  })

  it("refuses a bad queue name or --queue with --protocol ppp, naming --queue", async () => {
    const args = ["--connect", "tcp://127.0.0.1:5", "--echo"]
    for (const [extra, message] of [
      [["--queue", ""], /--queue.*non-empty/],
      [["--queue", "a", "--queue", "a"], /--queue.*twice/],
      [["--queue", "a", "--protocol", "ppp"], /--queue/],
    ] as const) {
      const err = await workerCommand.run([...args, ...extra]).catch((e: unknown) => e)
      expect(err, extra.join(" ")).toBeInstanceOf(UsageError)
      expect((err as Error).message).toMatch(message)
      expect((err as Error).message).not.toMatch(/'queues/)
    }
  })
})

const NOW = Date.now()

/**
 * A closed journal: pending 1 (default), 2 (queue "a", headers), 3 (queue "b"); dead letters
 * 4 (queue "a"), 5 (default), 6 (queue "a", headers).
 */
async function seeded(): Promise<string> {
  const dir = await tempDir()
  const journal = new LevelJournal(dir)
  await journal.open()
  try {
    await journal.append(
      [
        entry(1, { enqueuedAt: NOW }),
        entry(2, { enqueuedAt: NOW, queue: "a", headers: { trace: "t-2", "x y": 'q"' } }),
        entry(3, { enqueuedAt: NOW, queue: "b" }),
        entry(4, { enqueuedAt: NOW, queue: "a" }),
        entry(5, { enqueuedAt: NOW }),
        entry(6, { enqueuedAt: NOW, queue: "a", headers: { k: "v" } }),
      ],
      { sync: false },
    )
    await journal.bury([
      letter(entry(4, { enqueuedAt: NOW, queue: "a" }), "four", NOW),
      letter(entry(5, { enqueuedAt: NOW }), "five", NOW),
      letter(entry(6, { enqueuedAt: NOW, queue: "a", headers: { k: "v" } }), "six", NOW),
    ])
  } finally {
    await journal.close()
  }
  return dir
}

const idsOf = (stdout: string): string[] =>
  stdout
    .trimEnd()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => l.split(" ")[0] as string)

describe("pirate journal --queue", { timeout: 40_000 }, () => {
  it("pending and dead list only the named queue's entries, with their queue and headers", async () => {
    const dir = await seeded()
    // One at a time: a journal is held by one process.
    const pendingA = await pirate("journal", "pending", dir, "--queue", "a")
    const pendingDefault = await pirate("journal", "pending", dir, "--queue", "default")
    const deadA = await pirate("journal", "dead", dir, "--queue", "a")
    const deadB = await pirate("journal", "dead", dir, "--queue", "b")
    const all = await pirate("journal", "pending", dir)
    expect(pendingA).toMatchObject({ code: 0, stderr: "" })
    expect(idsOf(pendingA.stdout)).toEqual([id(2)])
    expect(pendingA.stdout).toContain(`queue="a"  headers={"trace":"t-2","x y":"q\\""}`)
    expect(idsOf(pendingDefault.stdout)).toEqual([id(1)])
    expect(pendingDefault.stdout).not.toContain("queue=")
    expect(idsOf(deadA.stdout)).toEqual([id(4), id(6)])
    expect(deadA.stdout).toContain(`queue="a"  headers={"k":"v"}  error="six"`)
    expect(deadB).toEqual({ code: 0, stdout: "", stderr: "" })
    expect(idsOf(all.stdout)).toEqual([id(1), id(2), id(3)])

    const json = await pirate("journal", "dead", dir, "--queue", "a", "--json", "--limit", "1")
    expect(json.code).toBe(0)
    const rows = json.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(rows).toEqual([
      expect.objectContaining({ id: id(4), queue: "a", headers: null, lastError: "four" }),
    ])
    const dflt = await pirate("journal", "dead", dir, "--queue", "default", "--json")
    expect(JSON.parse(dflt.stdout)).toMatchObject({ id: id(5), queue: "default", headers: null })
  })

  it("stats counts the pending messages and dead letters of each queue", async () => {
    const dir = await seeded()
    const text = await pirate("journal", "stats", dir)
    expect(text).toMatchObject({ code: 0, stderr: "" })
    expect(text.stdout).toMatch(/^queue +"a": 1 pending, 2 dead$/m)
    expect(text.stdout).toMatch(/^queue +"b": 1 pending, 0 dead$/m)
    expect(text.stdout).toMatch(/^queue +"default": 1 pending, 1 dead$/m)
    const json = await pirate("journal", "stats", dir, "--json")
    expect((JSON.parse(json.stdout) as Record<string, unknown>)["queues"]).toEqual({
      a: { pending: 1, dead: 2 },
      b: { pending: 1, dead: 0 },
      default: { pending: 1, dead: 1 },
    })
  })

  it("replay --queue moves every dead letter of that queue, and only those", async () => {
    const dir = await seeded()
    const r = await pirate("journal", "replay", dir, "--queue", "a", "--json")
    expect(r).toMatchObject({ code: 0, stderr: "" })
    expect(JSON.parse(r.stdout)).toEqual({ replayed: [id(4), id(6)], notDead: [] })
    expect(await journalStats(dir)).toEqual({ pending: 5, dead: 1, scheduled: 0 })
    const left = await pirate("journal", "dead", dir)
    expect(idsOf(left.stdout)).toEqual([id(5)])
    const replayed = await pirate("journal", "pending", dir, "--queue", "a")
    expect(idsOf(replayed.stdout)).toEqual([id(2), id(4), id(6)])

    const none = await pirate("journal", "replay", dir, "--queue", "a")
    expect(none).toEqual({
      code: 0,
      stdout: 'replayed 0 dead letters of queue "a"\n',
      stderr: "",
    })
  })

  it("refuses --queue where it does not apply, and ids with --queue", async () => {
    const dir = await seeded()
    for (const [args, message] of [
      [["stats", dir, "--queue", "a"], /--queue applies to pending, dead, replay and purge/],
      [["replay", dir, id(4), "--queue", "a"], /either message ids or --queue/],
      [["pending", dir, "--queue", ""], /--queue must name a queue/],
    ] as const) {
      const err = await journalCommand.run([...args]).catch((e: unknown) => e)
      expect(err, args.join(" ")).toBeInstanceOf(UsageError)
      expect((err as Error).message).toMatch(message)
    }
    expect(await journalStats(dir)).toEqual({ pending: 3, dead: 3, scheduled: 0 })
  })
})
