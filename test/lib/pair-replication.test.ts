import { randomBytes } from "node:crypto"
import { mkdir, mkdtemp, readdir, rm, statfs, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, onTestFinished, test, type TestContext } from "vitest"
import { errorCode } from "../../lib/errors.js"
import { LevelJournal } from "../../lib/journal/level.js"
import { MemoryJournal } from "../../lib/journal/memory.js"
import { journalSenderId } from "../../lib/journal/sender-id.js"
import type { Journal } from "../../lib/journal/types.js"
import { PAIR_LOG_DIR } from "../../lib/pair/passive-log.js"
import { readPairFile } from "../../lib/pair/replication.js"
import { pairNode, type PairNode } from "../fixtures/pair-replication-node.js"
import { DEDUPE_IDS, everyChange } from "../helpers/journal-changes.js"
import { journalContents } from "../helpers/journal-contents.js"
import { tmpfs } from "../helpers/tmpfs.js"
import { waitFor } from "../helpers/wait.js"
import { entry, entryRange, id } from "../suites/journal.js"

const HEARTBEAT = 50

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-pair-repl-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function journal(kind: "memory" | "level", dir?: string): Promise<Journal> {
  const j = kind === "memory" ? new MemoryJournal() : new LevelJournal(dir ?? (await tempDir()))
  await j.open()
  onTestFinished(() => j.close())
  return j
}

type NodeOptions = Omit<Parameters<typeof pairNode>[0], "heartbeatInterval">

/** The nodes of the running test. */
const nodes = new Set<PairNode>()

async function node(options: NodeOptions): Promise<PairNode> {
  const n = await pairNode({ heartbeatInterval: HEARTBEAT, ...options })
  nodes.add(n)
  onTestFinished(async () => {
    nodes.delete(n)
    await n.close()
  })
  return n
}

/** A primary and a backup, connected; resolves once the primary is active. */
async function pair(
  a: Omit<NodeOptions, "role">,
  b: Omit<NodeOptions, "role">,
): Promise<{ a: PairNode; b: PairNode }> {
  const na = await node({ role: "primary", ...a })
  const nb = await node({ role: "backup", ...b, peer: na.link.endpoint ?? "" })
  na.link.connect(nb.link.endpoint ?? "")
  await waitFor(() => expect(na.link.state).toBe("active"))
  return { a: na, b: nb }
}

/**
 * A pair whose passive keeps its LevelJournal on a new 16 MiB tmpfs, caught up; `fill(room)`
 * fills that disk but for `room` bytes and returns the filler file's path.
 */
async function passiveOnSmallDisk(
  ctx: TestContext,
  repl: NodeOptions["repl"] = {},
): Promise<{ a: PairNode; b: PairNode; fill: (room: number) => Promise<string> }> {
  const disk = await tmpfs(ctx, 16)
  const dirB = join(disk, "journal")
  await mkdir(dirB)
  const { a, b } = await pair(
    { journal: await journal("memory"), repl: { replicated: true, whenAlone: "wait" } },
    { journal: await journal("level", dirB), dir: dirB, repl },
  )
  await inSync(a)
  const fill = async (room: number): Promise<string> => {
    const filler = join(disk, "filler")
    const { bavail, bsize } = await statfs(disk)
    await writeFile(filler, Buffer.alloc(Math.max(0, bavail * bsize - room)))
    return filler
  }
  return { a, b, fill }
}

/**
 * Waits until the active's stream is acked to its end by a caught-up passive, and the other
 * nodes' journals have what they logged (see PairReplication.settle()).
 */
async function inSync(a: PairNode): Promise<void> {
  await waitFor(() => expect(a.repl.stats()).toMatchObject({ replicated: true, lag: 0 }), {
    timeout: 8000,
  })
  for (const n of nodes) if (n !== a) await n.repl.settle()
}

const contents = (j: Journal, dedupe = DEDUPE_IDS): Promise<Record<string, unknown>> =>
  journalContents(j, dedupe)

/** Pending, dead and scheduled entries only: a full copy does not carry acked send ids. */
async function entriesOf(j: Journal): Promise<unknown> {
  const all = await journalContents(j)
  return { pending: all["pending"], dead: all["dead"], scheduled: all["scheduled"] }
}

describe("PairReplication", () => {
  for (const [ka, kb] of [
    ["memory", "memory"],
    ["level", "level"],
    ["memory", "level"],
  ] as const) {
    test(`the stream keeps the passive equal to the active (${ka} → ${kb}), and the passive adopts the pair's sender id`, async () => {
      const ja = await journal(ka)
      const jb = await journal(kb)
      const { a, b } = await pair({ journal: ja }, { journal: jb })
      // Caught up first (a copy of the empty journal), so that every change goes by the stream.
      await inSync(a)
      await everyChange(a.repl.journal)
      await inSync(a)
      expect(await contents(jb)).toEqual(await contents(ja))
      expect(a.repl.stats().applied).toBeGreaterThan(5)
      expect(b.repl.stats()).toMatchObject({
        applied: a.repl.stats().applied,
        stream: a.repl.stats().stream,
        lag: 0,
      })
      expect(b.repl.senderId).toBe(await journalSenderId(ja))
      await waitFor(async () => expect(await journalSenderId(jb)).toBe(await journalSenderId(ja)))
      expect(await b.repl.journal.senderId?.()).toBe(await journalSenderId(ja))
      expect([...a.errors, ...b.errors]).toEqual([])
    })
  }

  test("replicated appends resolve only after the passive's ack; with the peer gone they wait (whenAlone wait) and resolve when it is back", async () => {
    const dirB = await tempDir()
    const { a, b } = await pair(
      { journal: await journal("memory"), repl: { replicated: true, whenAlone: "wait" } },
      { journal: await journal("level", dirB), dir: dirB },
    )
    await inSync(a)
    let acked = 0
    a.link.on("ack", ({ seq }) => (acked = Math.max(acked, seq)))
    await a.repl.journal.append([entry(2)], { sync: false })
    const seq = a.repl.stats().applied + a.repl.stats().lag
    expect(seq).toBeGreaterThanOrEqual(1)
    // Resolved only once the passive's ACK covered the append's record.
    expect(acked).toBeGreaterThanOrEqual(seq)

    const bind = b.link.endpoint ?? ""
    await b.close()
    await b.journal.close()
    await waitFor(() => expect(a.link.peerStatus).toBe("lost"))
    expect(a.repl.replicated).toBe(false)
    let settled = false
    const waiting = a.repl.journal.append([entry(4)], { sync: false }).then(() => (settled = true))
    await waitFor(() => expect(a.repl.sizes().waiters).toBe(1))
    // Several heartbeats later it still waits.
    await new Promise((resolve) => setTimeout(resolve, 4 * HEARTBEAT))
    expect(settled).toBe(false)

    const b2 = await node({
      role: "backup",
      journal: await journal("level", dirB),
      dir: dirB,
      bind,
      peer: a.link.endpoint ?? "",
    })
    await waiting
    expect(a.repl.sizes().waiters).toBe(0)
    await inSync(a)
    expect(await contents(b2.journal)).toEqual(await contents(a.journal))
  })

  test('whenAlone "local": with the peer gone replicated appends resolve after the local write and `replicated` is false', async () => {
    const { a, b } = await pair(
      { journal: await journal("memory"), repl: { replicated: true, whenAlone: "local" } },
      { journal: await journal("memory") },
    )
    await inSync(a)
    expect(a.repl.replicated).toBe(true)
    const events: boolean[] = []
    a.repl.on("replicated", ({ replicated }) => events.push(replicated))
    await b.close()
    await waitFor(() => expect(a.repl.replicated).toBe(false))
    await a.repl.journal.append([entry(2)], { sync: false })
    expect(a.repl.sizes().waiters).toBe(0)
    expect(await a.journal.pending({ limit: 10 })).toHaveLength(1)
    expect(events).toEqual([false])
  })

  test("stop() rejects every append waiting for the peer", async () => {
    const { a, b } = await pair(
      { journal: await journal("memory"), repl: { replicated: true, whenAlone: "wait" } },
      { journal: await journal("memory") },
    )
    await inSync(a)
    await b.close()
    await waitFor(() => expect(a.link.peerStatus).toBe("lost"))
    const waiting = [1, 2, 3].map((n) => a.repl.journal.append([entry(n * 2)], { sync: false }))
    await waitFor(() => expect(a.repl.sizes().waiters).toBe(3))
    const err = new Error("stopped")
    a.repl.stop(err)
    for (const w of waiting) await expect(w).rejects.toBe(err)
    expect(a.repl.sizes().waiters).toBe(0)
    await expect(a.repl.journal.append([entry(8)], { sync: false })).rejects.toBe(err)
  })

  test("a passive restarted while the ring holds its tail catches up from it (no copy); the pair file is written and read back", async () => {
    const dirA = await tempDir()
    const dirB = await tempDir()
    const { a, b } = await pair(
      { journal: await journal("level", dirA), dir: dirA },
      { journal: await journal("level", dirB), dir: dirB },
    )
    await a.repl.journal.append(entryRange(1, 10), { sync: false })
    await inSync(a)
    const bind = b.link.endpoint ?? ""
    await b.close()
    await b.journal.close()
    const saved = await readPairFile(dirB)
    expect(saved).toMatchObject({
      stream: a.repl.stats().stream,
      applied: a.repl.stats().applied,
      sender: await journalSenderId(a.journal),
    })
    expect(saved?.epoch).toBe(a.link.epoch)

    await a.repl.journal.remove([id(1), id(2)])
    await a.repl.journal.append(entryRange(11, 20), { sync: false })
    const b2 = await node({
      role: "backup",
      journal: await journal("level", dirB),
      dir: dirB,
      bind,
      peer: a.link.endpoint ?? "",
    })
    const copies: number[] = []
    b2.link.on("copy", ({ page }) => copies.push(page))
    b2.link.on("copy:end", () => copies.push(-1))
    await inSync(a)
    expect(copies).toEqual([])
    expect(await contents(b2.journal)).toEqual(await contents(a.journal))

    await a.repl.flush()
    const fileA = await readPairFile(dirA)
    // The active's watermark: the greatest of its own (even) ids the passive acked.
    expect(fileA?.watermark).toBe(id(20))
    expect(fileA?.stream).toBeUndefined()
  })

  test("a passive restarted after the ring was exceeded gets a full copy, while the active keeps writing", async () => {
    const dirB = await tempDir()
    const { a, b } = await pair(
      { journal: await journal("level"), repl: { backlog: { records: 20 } } },
      { journal: await journal("level", dirB), dir: dirB },
    )
    await a.repl.journal.append(entryRange(1, 4), { sync: false })
    await inSync(a)
    const bind = b.link.endpoint ?? ""
    await b.close()
    await b.journal.close()
    // Far beyond the ring: 3000 entries in 60 records, some removed, some dead.
    for (let k = 0; k < 60; k++) {
      await a.repl.journal.append(entryRange(100 + k * 50, 149 + k * 50), { sync: false })
    }
    await a.repl.journal.remove([id(100), id(101)])
    await a.repl.journal.bury([{ ...entry(102), lastError: "x", deadAt: 1 }])
    expect(a.repl.sizes().ring).toBeLessThanOrEqual(20)

    const b2 = await node({
      role: "backup",
      journal: await journal("level", dirB),
      dir: dirB,
      bind,
      peer: a.link.endpoint ?? "",
    })
    const pages: number[] = []
    b2.link.on("copy", ({ page }) => pages.push(page))
    // Writes while the copy runs.
    let writing = true
    let n = 5000
    const writer = (async () => {
      while (writing) {
        await a.repl.journal.append([entry(n)], { sync: false })
        if (n % 3 === 0) await a.repl.journal.remove([id(n - 1)])
        n += 1
        await new Promise((resolve) => setImmediate(resolve))
      }
    })()
    await waitFor(() => expect(pages.length).toBeGreaterThan(3), { timeout: 8000 })
    writing = false
    await writer
    expect(n).toBeGreaterThan(5000)
    await inSync(a)
    expect(pages[0]).toBe(0)
    expect(await entriesOf(b2.journal)).toEqual(await entriesOf(a.journal))
    expect(await b2.repl.lastIdFloor()).toBe(await a.journal.lastId())
  })

  test("a full copy cut short loses nothing the passive held: each page replaces only its own id range", async () => {
    const dirB = await tempDir()
    const ja = await journal("level")
    const { a, b } = await pair(
      // One copy page in flight at a time: the copy is cut after its first pages.
      { journal: ja, repl: { backlog: { records: 5 }, window: { bytes: 1 } } },
      { journal: await journal("level", dirB), dir: dirB },
    )
    await a.repl.journal.append(entryRange(1, 2000), { sync: false })
    await inSync(a)
    const bind = b.link.endpoint ?? ""
    await b.close()
    await b.journal.close()
    // While the backup is away: acks, a dead letter, and far more changes than the ring holds.
    await a.repl.journal.remove(entryRange(1, 50).map((e) => e.id))
    await a.repl.journal.bury([{ ...entry(60), lastError: "x", deadAt: 1 }])
    for (let k = 0; k < 20; k++) await a.repl.journal.append([entry(5000 + k)], { sync: false })
    const held = (await entriesOf(a.journal)) as { pending: { id: string }[] }

    // The backup returns; the active goes away as soon as the first page of the copy arrives.
    const jb = await journal("level", dirB)
    const b2 = await node({
      role: "backup",
      journal: jb,
      dir: dirB,
      bind,
      peer: a.link.endpoint ?? "",
    })
    await new Promise<void>((resolve) => b2.link.once("copy", () => resolve()))
    await a.close()
    await waitFor(() => expect(b2.link.peerStatus).toBe("lost"))
    // Everything the active holds that the backup held before the copy is still there.
    const ids = new Set((await jb.pending({ limit: 10_000 })).map((e) => e.id))
    const missing = held.pending.map((e) => e.id).filter((i) => i < id(5000) && !ids.has(i))
    expect(missing).toEqual([])
    expect(ids.size).toBeGreaterThanOrEqual(2000 - 50 - 1)
  })

  test("hand-over: a returning node's own entries above its watermark that the active lacks end up on the active", async () => {
    const ja = await journal("memory")
    const jb = await journal("level")
    await ja.append([entry(2), entry(4)], { sync: false })
    // The backup's own (odd) ids, resolved while it was alone, and one the active holds too.
    await jb.append([entry(3), entry(5), entry(7)], { sync: false })
    await ja.append([entry(7)], { sync: false })
    await jb.schedule?.([entry(9, { notBefore: 1_900_000_000_000 })], { sync: false })
    // Listening before the backup exists: its hand-over may be over by the time it is passive.
    const a = await node({ role: "primary", journal: ja })
    const handed: string[] = []
    a.repl.on("handover", ({ pending, scheduled }) =>
      handed.push(...[...pending, ...scheduled].map((e) => e.id)),
    )
    const b = await node({ role: "backup", journal: jb, peer: a.link.endpoint ?? "" })
    a.link.connect(b.link.endpoint ?? "")
    await waitFor(() => expect(b.passive).toHaveLength(1))
    expect(await b.passive[0]).toBeUndefined()
    expect(handed.sort()).toEqual([id(3), id(5), id(9)])
    expect((await ja.pending({ limit: 10 })).map((e) => e.id)).toEqual([
      id(2),
      id(3),
      id(4),
      id(5),
      id(7),
    ])
    expect((await ja.due?.({ until: Infinity, limit: 10 }))?.map((e) => e.id)).toEqual([id(9)])
    await inSync(a)
    expect(await entriesOf(jb)).toEqual(await entriesOf(ja))
  })

  test("hand-over: a page that takes the active longer than pair.timeout to write is written once, however often the returning node sends it again", async () => {
    const ja = await journal("memory")
    const jb = await journal("level")
    await jb.append([entry(3), entry(5)], { sync: false })
    // The active checks whether it holds each handed entry (a pending read up to its id): make
    // each check take longer than the pair's timeout (3 heartbeats), as on a busy disk.
    const checks: string[] = []
    const pending = ja.pending.bind(ja)
    ja.pending = async (options) => {
      if (options?.until !== undefined) {
        checks.push(options.until)
        await new Promise((resolve) => setTimeout(resolve, 4 * HEARTBEAT))
      }
      return pending(options)
    }
    const { a, b } = await pair({ journal: ja }, { journal: jb })
    const handed: string[] = []
    a.repl.on("handover", ({ pending }) => handed.push(...pending.map((e) => e.id)))
    await waitFor(() => expect(b.passive).toHaveLength(1))
    expect(await b.passive[0]).toBeUndefined()
    expect(handed.sort()).toEqual([id(3), id(5)])
    // The page was sent again each timeout while the active worked on it; the copies were
    // not worked on again.
    expect(checks.sort()).toEqual([id(3), id(5)])
    await inSync(a)
    expect(await entriesOf(jb)).toEqual(await entriesOf(ja))
  })

  test("flow control: no more than window.records are sent unacked; the ring and its bytes are bounded", async () => {
    const { a, b } = await pair(
      {
        journal: await journal("memory"),
        repl: { window: { records: 8 }, backlog: { records: 1000, bytes: 64 * 1024 } },
      },
      { journal: await journal("memory") },
    )
    await inSync(a)
    // The passive's ACKs are held back until open(): a slow passive.
    let held: (() => void)[] | undefined = []
    const open = (): void => {
      const acks = held ?? []
      held = undefined
      for (const ack of acks) ack()
    }
    const sendAck = b.link.sendAck.bind(b.link)
    b.link.sendAck = (stream, seq, page) => {
      if (held === undefined) sendAck(stream, seq, page)
      else held.push(() => sendAck(stream, seq, page))
    }
    let maxUnacked = 0
    const send = a.link.sendEncoded.bind(a.link)
    a.link.sendEncoded = (stream, first, records) => {
      send(stream, first, records)
      maxUnacked = Math.max(maxUnacked, a.repl.sizes().unacked)
    }
    for (let k = 1; k <= 100; k++) await a.repl.journal.append([entry(k * 2)], { sync: false })
    await waitFor(() => expect(a.repl.sizes().unacked).toBe(8))
    expect(a.repl.stats().lag).toBe(100)
    open()
    await inSync(a)
    expect(maxUnacked).toBe(8)
    expect(await contents(b.journal, [])).toEqual(await contents(a.journal, []))

    // The ring keeps at most 64 KiB: 1 KiB payloads.
    for (let k = 1; k <= 200; k++)
      await a.repl.journal.append([entry(1000 + k * 2, { payload: Buffer.alloc(1024) })], {
        sync: false,
      })
    expect(a.repl.sizes().ringBytes).toBeLessThanOrEqual(64 * 1024)
    expect(a.repl.sizes().ring).toBeLessThan(64)
    await inSync(a)
  })

  test("large payloads: a record larger than window.bytes still goes, one at a time", async () => {
    const { a, b } = await pair(
      { journal: await journal("memory"), repl: { window: { bytes: 4 * 1024 * 1024 } } },
      { journal: await journal("memory") },
    )
    await inSync(a)
    const big = Buffer.alloc(8 * 1024 * 1024, 7)
    let maxUnacked = 0
    const send = a.link.sendEncoded.bind(a.link)
    a.link.sendEncoded = (stream, first, records) => {
      send(stream, first, records)
      maxUnacked = Math.max(maxUnacked, a.repl.sizes().unacked)
    }
    for (let k = 1; k <= 3; k++)
      await a.repl.journal.append([entry(k * 2, { payload: big })], { sync: false })
    await inSync(a)
    expect(maxUnacked).toBe(1)
    const got = await b.journal.pending({ limit: 10 })
    expect(got.map((e) => e.payload.equals(big))).toEqual([true, true, true])
  })

  test("a gap in the stream is a counted drop and a new catch-up request, never a crash", async () => {
    const { a, b } = await pair(
      { journal: await journal("memory") },
      { journal: await journal("memory") },
    )
    await a.repl.journal.append(entryRange(1, 3), { sync: false })
    await inSync(a)
    const stream = a.repl.stats().stream ?? ""
    const before = b.repl.stats().dropped
    const seq = a.repl.stats().applied
    a.link.sendRecords(stream, [{ op: "purge", ids: [id(1)], seq: seq + 5 }])
    await waitFor(() => expect(b.repl.stats().dropped).toBe(before + 1))
    await a.repl.journal.append(entryRange(4, 6), { sync: false })
    await inSync(a)
    expect(await contents(b.journal)).toEqual(await contents(a.journal))
    expect([...a.errors, ...b.errors]).toEqual([])
  })

  test("what a passive holds for its journal stays within hold.records and hold.bytes, and its log goes once the journal has it", async () => {
    const dirB = await tempDir()
    const hold = { ms: 60_000, records: 16, bytes: 64 * 1024 }
    const { a, b } = await pair(
      { journal: await journal("memory"), repl: { replicated: true } },
      { journal: await journal("level", dirB), dir: dirB, repl: { hold } },
    )
    await inSync(a)
    let most = { held: 0, heldBytes: 0 }
    for (let k = 1; k <= 200; k++) {
      // Appended and never acked: nothing cancels out.
      await a.repl.journal.append([entry(2 * k, { payload: randomBytes(4096) })], { sync: false })
      const { held, heldBytes } = b.repl.sizes()
      most = { held: Math.max(most.held, held), heldBytes: Math.max(most.heldBytes, heldBytes) }
    }
    expect(most.held).toBeLessThanOrEqual(hold.records)
    expect(most.heldBytes).toBeLessThanOrEqual(hold.bytes + 4096 + 256)
    expect(most.held).toBeGreaterThan(0)
    await inSync(a)
    expect(b.repl.sizes()).toMatchObject({ held: 0, heldBytes: 0 })
    expect(await readdir(join(dirB, PAIR_LOG_DIR))).toEqual([])
    expect((await b.journal.pending({ limit: 1000 })).length).toBe(200)
  })

  test("the passive's disk full: it acks nothing, replicated appends wait; with room again they resolve and the passive holds them all", async (ctx) => {
    const { a, b, fill } = await passiveOnSmallDisk(ctx)
    const filler = await fill(2 * 1024 * 1024)
    let resolved = 0
    const payload = randomBytes(64 * 1024)
    const appends = Array.from({ length: 100 }, (_, k) =>
      a.repl.journal
        .append([entry(2 * (k + 1), { payload })], { sync: false })
        .then(() => resolved++),
    )
    await waitFor(() => expect(b.errors.map((e) => errorCode(e))).toContain("PIRATE_JOURNAL_FULL"))
    expect(resolved).toBeLessThan(100)
    // It asks for the stream again once per pair.timeout (3 heartbeats), not as fast as it fails:
    // over 8 timeouts, about 8 failed writes.
    await new Promise((resolve) => setTimeout(resolve, 8 * 3 * HEARTBEAT))
    expect(b.errors.length).toBeLessThanOrEqual(10)
    expect(resolved).toBeLessThan(100)
    await rm(filler)
    await Promise.all(appends)
    await inSync(a)
    expect(await contents(b.journal)).toEqual(await contents(a.journal))
    expect((await b.journal.pending({ limit: 1000 })).length).toBe(100)
  })

  test("a passive whose journal cannot take what it holds (disk full) does not become active until it can", async (ctx) => {
    const { a, b, fill } = await passiveOnSmallDisk(ctx, { hold: { ms: 60_000 } })
    const payload = randomBytes(64 * 1024)
    for (let k = 1; k <= 20; k++)
      await a.repl.journal.append([entry(2 * k, { payload })], { sync: false })
    expect(b.repl.sizes().held).toBe(20) // logged and acked, not in the journal
    const filler = await fill(0)
    b.repl.startActive()
    let floor = false
    const ready = b.repl.lastIdFloor().then(() => (floor = true))
    await waitFor(() => expect(b.errors.map((e) => errorCode(e))).toContain("PIRATE_JOURNAL_FULL"))
    // Tried again every pair.timeout; meanwhile it is not ready to be active.
    await new Promise((resolve) => setTimeout(resolve, 3 * 3 * HEARTBEAT))
    expect(floor).toBe(false)
    await rm(filler)
    await ready
    expect((await b.journal.pending({ limit: 100 })).map((e) => e.id)).toEqual(
      Array.from({ length: 20 }, (_, k) => id(2 * (k + 1))),
    )
  })
})
