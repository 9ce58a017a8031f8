/**
 * A sender whose journal's disk fills up, on a real small tmpfs: sends of the failed batches
 * reject with PIRATE_JOURNAL_FULL, every send that resolved is delivered, the process does not
 * crash (no `error` listener is needed), and the sender takes sends again once space is freed.
 */
import { randomBytes } from "node:crypto"
import { rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { describe, expect, test } from "vitest"
import { PirateError } from "../../lib/errors.js"
import { internals } from "../../patterns/paranoid-pirate/core/index.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { tmpfs } from "../helpers/tmpfs.js"

describe("Sender: disk full", () => {
  test("rejects the failed sends with PIRATE_JOURNAL_FULL, keeps the resolved ones, recovers once space is freed", async (ctx) => {
    const disk = await tmpfs(ctx, 8)
    const filler = join(disk, "filler")
    // Leave about 1.5 MiB for the journal: a few hundred 4 KiB messages fit, then the log fails.
    await writeFile(filler, Buffer.alloc(6 * 1024 * 1024 + 512 * 1024))
    // No worker, a small window: most messages wait on disk (store and forward).
    const sender = await openSender({ journal: join(disk, "journal"), codec: "raw", window: 50 })
    const resolved = new Set<string>()
    let failure: unknown
    for (let batch = 0; batch < 200 && failure === undefined; batch++) {
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, () => sender.send(randomBytes(4096))),
      )
      for (const r of results) {
        if (r.status === "fulfilled") resolved.add(r.value)
        else failure ??= r.reason
      }
    }
    expect(failure).toBeInstanceOf(PirateError)
    expect(failure).toMatchObject({ code: "PIRATE_JOURNAL_FULL" })
    expect((failure as Error).message).toContain(disk)
    expect(resolved.size).toBeGreaterThan(50)
    // Still full: sends keep failing with the same code, and the process is fine.
    await expect(sender.send(randomBytes(4096))).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_FULL",
    })

    await rm(filler)
    for (let i = 0; i < 100; i++) resolved.add(await sender.send(randomBytes(4096)))

    const delivered = new Set<string>()
    await openWorker(sender.endpoint, {
      codec: "raw",
      concurrency: 16,
      handler: (_payload, c) => {
        delivered.add(c.id)
        return Buffer.alloc(0)
      },
    })
    await sender.drained({ signal: AbortSignal.timeout(20_000) })
    const lost = [...resolved].filter((id) => !delivered.has(id))
    expect(lost).toEqual([])
    const rejectedYetDelivered = [...delivered].filter((id) => !resolved.has(id))
    expect(rejectedYetDelivered).toEqual([])
    expect((await sender.journal.stats()).pending).toBe(0)
    expect(Object.entries(sender[internals]()).filter(([, n]) => n !== 0)).toEqual([])
  }, 40_000)

  test("delayed sends: the failed ones reject, every resolved one is delivered once due, after space is freed", async (ctx) => {
    const disk = await tmpfs(ctx, 8)
    const filler = join(disk, "filler")
    await writeFile(filler, Buffer.alloc(6 * 1024 * 1024 + 512 * 1024))
    const sender = await openSender({ journal: join(disk, "journal"), codec: "raw" })
    const due = new Map<string, number>()
    let failure: unknown
    for (let batch = 0; batch < 200 && failure === undefined; batch++) {
      const at = Date.now() + 300
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, () => sender.send(randomBytes(4096), { notBefore: at })),
      )
      for (const r of results) {
        if (r.status === "fulfilled") due.set(r.value, at)
        else failure ??= r.reason
      }
    }
    expect(failure).toMatchObject({ code: "PIRATE_JOURNAL_FULL" })
    expect(due.size).toBeGreaterThan(50)
    expect(sender.stats().scheduled).toBe(due.size)

    await rm(filler)
    const delivered = new Map<string, number>()
    await openWorker(sender.endpoint, {
      codec: "raw",
      concurrency: 16,
      handler: (_payload, c) => {
        delivered.set(c.id, Date.now())
        return Buffer.alloc(0)
      },
    })
    await sender.drained({ signal: AbortSignal.timeout(20_000) })
    expect([...due.keys()].filter((id) => !delivered.has(id))).toEqual([])
    expect([...delivered.keys()].filter((id) => !due.has(id))).toEqual([])
    const early = [...delivered].filter(([id, t]) => t < (due.get(id) as number))
    expect(early).toEqual([])
    expect(await sender.journal.stats()).toMatchObject({ pending: 0, scheduled: 0 })
    expect(Object.entries(sender[internals]()).filter(([, n]) => n !== 0)).toEqual([])
  }, 40_000)
})
