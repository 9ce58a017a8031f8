import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdtemp, readdir, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Level } from "level"
import { describe, expect, onTestFinished, test } from "vitest"
import { UsageError } from "../../bin/cli.js"
import { command } from "../../bin/commands/journal.js"
import { LevelJournal } from "../../lib/journal/level.js"
import { journalStats } from "../helpers/journal-files.js"
import { entry, id, letter } from "../suites/journal.js"

const PIRATE = fileURLToPath(new URL("../../bin/pirate.js", import.meta.url))

interface Result {
  code: number
  stdout: string
  stderr: string
}

/** Runs `node bin/pirate.js ARGS` and collects its output and exit status. */
function pirate(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PIRATE, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-journal-cli-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const NOW = Date.now()

/** A closed journal with pending ids 1–3 (2 has failed once) and dead letters 4, 5. */
async function seeded(): Promise<string> {
  const dir = await tempDir()
  const journal = new LevelJournal(dir)
  await journal.open()
  try {
    await journal.append(
      [1, 2, 3, 4, 5].map((n) =>
        entry(n, { payload: Buffer.alloc(100 + n), enqueuedAt: NOW - 60_000 * (6 - n) }),
      ),
      { sync: false },
    )
    await journal.update([
      { id: id(2), attempts: 2, lastError: "worker lost", notBefore: NOW + 5_000 },
    ])
    await journal.bury([
      letter(
        entry(4, { payload: Buffer.alloc(104), enqueuedAt: NOW - 120_000, attempts: 5 }),
        "too many attempts",
      ),
      letter(
        entry(5, { payload: Buffer.alloc(105), enqueuedAt: NOW - 60_000, attempts: 1 }),
        "rejected: bad",
      ),
    ])
  } finally {
    await journal.close()
  }
  return dir
}

// Each test spawns the CLI a few times; a loaded machine can make one spawn take seconds.
describe("pirate journal", { timeout: 30_000 }, () => {
  test("stats prints counts, the oldest pending message and its age", async () => {
    const dir = await seeded()
    const text = await pirate("journal", "stats", dir)
    expect(text).toMatchObject({ code: 0, stderr: "" })
    expect(text.stdout).toMatch(/^pending +3$/m)
    expect(text.stdout).toMatch(/^dead +2$/m)
    expect(text.stdout).toMatch(
      new RegExp(`^oldest +${id(1)}, enqueued \\S+ \\(5 min \\d+ s ago\\)$`, "m"),
    )
    expect(text.stdout).toMatch(new RegExp(`^last id +${id(5)}$`, "m"))
    expect(text.stdout).toMatch(
      /^on disk +[\d.]+ KiB \(LevelDB [\d.]+ KiB, value log [\d.]+ KiB in \d+ segments?\)$/m,
    )

    const json = await pirate("journal", "stats", "--json", dir)
    expect(json.code).toBe(0)
    const parsed = JSON.parse(json.stdout) as Record<string, unknown>
    expect(parsed).toMatchObject({
      path: dir,
      pending: 3,
      dead: 2,
      lastId: id(5),
      oldest: { id: id(1), enqueuedAt: NOW - 300_000 },
      disk: { levelBytes: expect.any(Number) as number, segments: expect.any(Number) as number },
    })
    const disk = parsed["disk"] as { levelBytes: number }
    expect(disk.levelBytes).toBeGreaterThan(0)
  })

  test("pending prints one line per entry; --json, --limit and --after", async () => {
    const dir = await seeded()
    const text = await pirate("journal", "pending", dir)
    expect(text.code).toBe(0)
    const lines = text.stdout.trimEnd().split("\n")
    expect(lines).toHaveLength(3)
    expect(lines[0]).toBe(
      `${id(1)}  attempts=0  enqueued=${new Date(NOW - 300_000).toISOString()}  size=101`,
    )
    expect(lines[1]).toBe(
      `${id(2)}  attempts=2  enqueued=${new Date(NOW - 240_000).toISOString()}  size=102  not-before=${new Date(NOW + 5_000).toISOString()}  error="worker lost"`,
    )

    const json = await pirate("journal", "pending", dir, "--json", "--limit", "2", "--after", id(1))
    expect(json.code).toBe(0)
    const rows = json.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(rows).toEqual([
      {
        id: id(2),
        attempts: 2,
        enqueuedAt: NOW - 240_000,
        size: 102,
        notBefore: NOW + 5_000,
        expiresAt: null,
        priority: 4,
        key: null,
        queue: "default",
        headers: null,
        lastError: "worker lost",
      },
      {
        id: id(3),
        attempts: 0,
        enqueuedAt: NOW - 180_000,
        size: 103,
        notBefore: null,
        expiresAt: null,
        priority: 4,
        key: null,
        queue: "default",
        headers: null,
        lastError: null,
      },
    ])
  })

  test("pending shows a message's expiry, priority and key; stats counts scheduled ones", async () => {
    const dir = await tempDir()
    const journal = new LevelJournal(dir)
    await journal.open()
    try {
      await journal.append(
        [entry(1, { expiresAt: NOW + 60_000, priority: 9, key: "account 7", enqueuedAt: NOW })],
        { sync: false },
      )
      await journal.schedule?.([entry(2, { notBefore: NOW + 3_600_000, enqueuedAt: NOW })], {
        sync: false,
      })
    } finally {
      await journal.close()
    }
    const text = await pirate("journal", "pending", dir)
    expect(text.stdout.trimEnd()).toBe(
      `${id(1)}  attempts=0  enqueued=${new Date(NOW).toISOString()}  size=${entry(1).payload.length}  expires=${new Date(NOW + 60_000).toISOString()}  priority=9  key="account 7"`,
    )
    const stats = await pirate("journal", "stats", "--json", dir)
    expect(JSON.parse(stats.stdout)).toMatchObject({ pending: 1, scheduled: 1 })
  })

  test("dead prints id, attempts and last error", async () => {
    const dir = await seeded()
    const text = await pirate("journal", "dead", dir)
    expect(text.code).toBe(0)
    const lines = text.stdout.trimEnd().split("\n")
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(new RegExp(`^${id(4)}  attempts=5  .*  error="too many attempts"$`))
    const json = await pirate("journal", "dead", "--json", "-n", "1", dir)
    expect(JSON.parse(json.stdout)).toMatchObject({
      id: id(4),
      attempts: 5,
      lastError: "too many attempts",
      size: 104,
    })
  })

  test("replay DIR ID… moves dead letters back and reports unknown ids", async () => {
    const dir = await seeded()
    const r = await pirate("journal", "replay", dir, id(4), id(9))
    expect(r.code).toBe(0)
    expect(r.stdout).toBe("replayed 1 of 2 (1 not found among the dead letters)\n")
    expect(r.stderr).toBe(`pirate: ${id(9)} is not a dead letter\n`)
    expect(await journalStats(dir)).toEqual({ pending: 4, dead: 1, scheduled: 0 })
  })

  test("replay ID… DIR works too; none found exits non-zero", async () => {
    const dir = await seeded()
    const r = await pirate("journal", "replay", id(5), dir, "--json")
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ replayed: [id(5)], notDead: [] })
    const none = await pirate("journal", "replay", id(5), id(1), dir)
    expect(none.code).toBe(1)
    expect(none.stdout).toBe("replayed 0 of 2 (2 not found among the dead letters)\n")
    expect(await journalStats(dir)).toEqual({ pending: 4, dead: 1, scheduled: 0 })
  })

  test("replay --all and purge", async () => {
    const dir = await seeded()
    const purge = await pirate("journal", "purge", dir, id(5), id(3))
    expect(purge).toMatchObject({
      code: 0,
      stdout: "purged 1 of 2 (1 not found among the dead letters)\n",
    })
    expect(await journalStats(dir)).toEqual({ pending: 3, dead: 1, scheduled: 0 })
    const all = await pirate("journal", "replay", "--all", dir)
    expect(all).toMatchObject({ code: 0, stdout: "replayed 1 dead letter\n" })
    expect(await journalStats(dir)).toEqual({ pending: 4, dead: 0, scheduled: 0 })
  })

  test("while a sender holds the journal: one clear line, non-zero exit, nothing changed", async () => {
    const dir = await seeded()
    const holder = new LevelJournal(dir)
    onTestFinished(() => holder.close())
    await holder.open()
    const message = `the journal in ${dir} is held by a running sender; stop it or use the sender's API to replay`
    const r = await pirate("journal", "replay", dir, id(4))
    expect(r).toEqual({ code: 1, stdout: "", stderr: `pirate: ${message}\n` })
    // Every subcommand says the same (in this process: LevelDB also locks within a process).
    const others = [
      ["stats", dir],
      ["pending", dir],
      ["dead", dir],
      ["purge", dir, id(4)],
      ["repair", dir],
    ]
    for (const args of others) {
      await expect(command.run(args)).rejects.toMatchObject({
        code: "PIRATE_JOURNAL_LOCKED",
        message,
      })
    }
    expect(await holder.stats()).toEqual({ pending: 3, dead: 2, scheduled: 0 })
  })

  test("a missing directory is an error, not a new journal", async () => {
    const base = await tempDir()
    const missing = join(base, "nope")
    const r = await pirate("journal", "stats", missing)
    expect(r).toMatchObject({ code: 1, stdout: "" })
    expect(r.stderr).toBe(
      `pirate: there is no journal in ${missing}: the directory does not exist\n`,
    )
    expect(existsSync(missing)).toBe(false)
    await expect(command.run(["replay", base, id(1)])).rejects.toThrow(
      `there is no journal in ${base}; is this the sender's journal directory?`,
    )
    expect(await readdir(base)).toEqual([])
  })

  test("a damaged journal says how to recover, and repair recovers it", async () => {
    const dir = await seeded()
    const db = new Level<string, Buffer>(dir, { keyEncoding: "utf8", valueEncoding: "buffer" })
    await db.open()
    await db.put(`p:${id(2)}`, Buffer.from("garbage"))
    await db.close()
    const broken = await pirate("journal", "pending", dir)
    expect(broken.code).toBe(1)
    expect(broken.stderr).toContain("damaged entry")
    expect(broken.stderr).toContain(`pirate journal repair ${dir}`)
    const repaired = await pirate("journal", "repair", dir)
    expect(repaired.code).toBe(1) // an entry is lost
    expect(repaired.stdout).toContain("moved 1 entry aside (keys q:…)")
    expect(repaired.stdout).toContain(`lost 1 entry:\n${id(2)}  pending  value of 7 bytes`)
    expect(repaired.stderr).toBe(
      `pirate: lost 1 entry of the journal in ${dir}; the ids that could be read are listed above\n`,
    )
    const again = await pirate("journal", "repair", dir, "--json")
    expect(again.code).toBe(0) // nothing more to lose
    expect(JSON.parse(again.stdout)).toMatchObject({ path: dir, pending: 2, dead: 2, lost: 0 })
    const pending = await pirate("journal", "pending", dir)
    expect(
      pending.stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.slice(0, 16)),
    ).toEqual([id(1), id(3)])
  })

  test("usage errors exit with 2 and one line", async () => {
    const dir = await seeded()
    for (const args of [[], ["replay", id(1), dir, id(2)]]) {
      const r = await pirate("journal", ...args)
      expect(r.code).toBe(2)
      expect(r.stdout).toBe("")
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1)
    }
  })

  test("usage errors name the mistake (before touching the journal)", async () => {
    const dir = await seeded()
    const cases: [string[], RegExp][] = [
      [[], /expected a subcommand/],
      [["bogus", dir], /unknown subcommand "bogus"/],
      [["stats"], /expected one argument DIR/],
      [["stats", dir, "extra"], /expected one argument DIR/],
      [["replay", dir], /expected message ids to replay, or --all/],
      [["replay", id(1), id(2)], /expected the journal directory DIR/],
      [["replay", dir, "other", id(1)], /expected one DIR/],
      [["replay", id(1), dir, id(2)], /DIR must come right after "replay" or last/],
      [["replay", dir, id(1), "--all"], /either message ids or --all/],
      [["stats", dir, "--all"], /--all applies to replay and purge/],
      [["pending", dir, "--limit", "x"], /--limit must be a non-negative integer/],
      [["pending", dir, "--after", "nope"], /--after must be a message id/],
      [["stats", dir, "--limit", "3"], /--limit applies to pending and dead/],
      [["stats", dir, "--bogus"], /bogus/],
    ]
    for (const [args, message] of cases) {
      const err = await command.run(args).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err, args.join(" ")).toBeInstanceOf(UsageError)
      expect((err as Error).message).toMatch(message)
    }
    expect(await journalStats(dir)).toEqual({ pending: 3, dead: 2, scheduled: 0 })
  })

  test("--help documents both places of DIR", async () => {
    const r = await pirate("journal", "--help")
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("pirate journal replay  DIR (ID… | --all)")
    expect(r.stdout).toContain('"pirate journal replay ID… DIR"')
  })
})
