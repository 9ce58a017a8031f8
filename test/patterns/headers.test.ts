/**
 * Message headers (`send(payload, { headers })`) from the sender to the handler's `ctx.headers`:
 * as sent, frozen, through a journal restart, in the dead letters and their replay; the checks of
 * the option and its share of `maxMessageSize`; and on the wire, PPX/2's meta record (a fourth
 * TASKS frame) that a PPX/1 peer never sees, and that a worker drops when it is malformed.
 */
import { once } from "node:events"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer, Router } from "zeromq"
import { msgpackCodec, packMeta } from "../../lib/codec.js"
import { MAX_HEADERS, MAX_HEADERS_BYTES } from "../../lib/headers.js"
import {
  FRAME_TASKS,
  PPP,
  PPX,
  decodeEnvelope,
  decodeTaskMeta,
  decodeWelcome,
  encodeEnvelope,
  encodeReady,
  packBodies,
  packEnvelopes,
  packMetas,
  recordBounds,
  unpackBodies,
  unpackEnvelopes,
} from "../../lib/protocol.js"
import type { JobContext } from "../../patterns/index.js"
import { Inbox } from "../fuzz/peers.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { waitFor } from "../helpers/wait.js"

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-headers-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** What a handler saw of one call. */
interface Seen {
  payload: unknown
  id: string
  attempt: number
  queue: string
  headers: Readonly<Record<string, string>>
}

/** A handler that records each call; `fail` makes it throw for the payloads it matches. */
function recorder(fail: (payload: unknown) => boolean = () => false): {
  seen: Seen[]
  handler: (payload: unknown, ctx: JobContext) => unknown
} {
  const seen: Seen[] = []
  return {
    seen,
    handler: (payload, ctx) => {
      seen.push({
        payload,
        id: ctx.id,
        attempt: ctx.attempt,
        queue: ctx.queue,
        headers: ctx.headers,
      })
      if (fail(payload)) throw new Error(`refused ${String(payload)}`)
      return payload
    },
  }
}

const isCommand = (m: readonly Buffer[], cmd: number): boolean =>
  m[0]?.length === 1 && m[0][0] === cmd

describe("headers reach the handler", () => {
  it("as sent, frozen, {} when there are none, and not as the caller changed them after send()", async () => {
    const sender = await openSender()
    const mine: Record<string, string> = { "content-type": "image/png", "x-ünï": "çødé ✓" }
    const withHeaders = await sender.send("a", { headers: mine })
    // Changed after send() resolved, before any worker is there: the message keeps what was sent.
    mine["content-type"] = "text/plain"
    mine["added"] = "later"
    delete mine["x-ünï"]
    const without = await sender.send("b")
    const empty = await sender.send("c", { headers: {} })

    const { seen, handler } = recorder()
    await openWorker(sender.endpoint, { handler })
    await sender.drained()

    const by = new Map(seen.map((s) => [s.id, s]))
    expect(seen).toHaveLength(3)
    const a = by.get(withHeaders) as Seen
    expect(a.payload).toBe("a")
    expect(a.headers).toEqual({ "content-type": "image/png", "x-ünï": "çødé ✓" })
    expect(Object.isFrozen(a.headers)).toBe(true)
    expect(() => {
      ;(a.headers as Record<string, string>)["x"] = "y"
    }).toThrow(TypeError) // ESM is strict mode: writing a frozen object throws
    for (const id of [without, empty]) {
      const s = by.get(id) as Seen
      expect(s.headers).toEqual({})
      expect(Object.isFrozen(s.headers)).toBe(true)
    }
  })

  it("with request() as with send()", async () => {
    const sender = await openSender()
    await openWorker(sender.endpoint, {
      handler: (_p, ctx) => ({ ...ctx.headers }),
    })
    await expect(sender.request("x", { headers: { k: "v" }, timeout: 5000 })).resolves.toEqual({
      k: "v",
    })
  })

  it("survive a sender restart on a LevelJournal, with the queue they were sent to", async () => {
    const dir = await tempDir()
    const first = await openSender({ journal: dir })
    const ids = [
      await first.send({ n: 1 }, { headers: { trace: "one", "x-n": "1" } }),
      await first.send({ n: 2 }, { headers: { trace: "two" }, queue: "resize" }),
      await first.send({ n: 3 }),
    ]
    expect(first.stats().acked).toBe(0)
    await first.close()

    const second = await openSender({ journal: dir })
    // With named queues in the journal and no worker yet, what is not in memory waits on disk.
    expect(second.stats().ready + second.stats().backlog).toBe(3)
    const { seen, handler } = recorder()
    await openWorker(second.endpoint, { handler, queues: ["default", "resize"] })
    await second.drained()
    const by = new Map(seen.map((s) => [s.id, s]))
    expect([...by.keys()].sort()).toEqual([...ids].sort())
    expect(by.get(ids[0] as string)?.headers).toEqual({ trace: "one", "x-n": "1" })
    expect(by.get(ids[1] as string)?.headers).toEqual({ trace: "two" })
    expect(by.get(ids[2] as string)?.headers).toEqual({})
  })

  it("survive a failed attempt journaled before a restart, with their queue", async () => {
    const dir = await tempDir()
    const first = await openSender({ journal: dir, maxAttempts: 5 })
    const failing = recorder(() => true)
    const worker = await openWorker(first.endpoint, {
      handler: failing.handler,
      queues: ["resize"],
    })
    const nacked = once(first, "message:nacked")
    const id = await first.send("retry me", { headers: { h: "kept" }, queue: "resize" })
    await nacked
    await worker.close()
    await first.close()
    expect(failing.seen.map((s) => [s.id, s.queue, s.headers])).toContainEqual([
      id,
      "resize",
      { h: "kept" },
    ])

    // The journal holds the entry as rewritten after the failed attempt (its attempts counted).
    const second = await openSender({ journal: dir })
    const { seen, handler } = recorder()
    await openWorker(second.endpoint, { handler, queues: ["default", "resize"] })
    await second.drained()
    expect(seen.map((s) => [s.id, s.queue, s.headers])).toEqual([[id, "resize", { h: "kept" }]])
    expect(seen[0]?.attempt).toBeGreaterThan(1)
  })

  it.each(["memory", "level"])(
    "are kept in the dead letters with their queue, and replay() delivers both again (%s journal)",
    async (kind) => {
      const dir = kind === "level" ? await tempDir() : undefined
      const sender = await openSender({ maxAttempts: 1, ...(dir ? { journal: dir } : {}) })
      const { seen, handler } = recorder((p) => p === "poison")
      await openWorker(sender.endpoint, { handler, queues: ["default", "resize"] })
      const dead = once(sender, "message:dead")
      const id = await sender.send("poison", {
        headers: { reason: "test", "x-k": "v" },
        queue: "resize",
      })
      await dead
      const letters = await sender.deadLetters()
      expect(letters.map((l) => [l.id, l.queue, l.headers])).toEqual([
        [id, "resize", { reason: "test", "x-k": "v" }],
      ])
      expect((await sender.journal.dead()).map((l) => l.headers)).toEqual([
        { reason: "test", "x-k": "v" },
      ])
      expect(seen).toHaveLength(1)
      expect(await sender.replay([id])).toEqual([id])
      // The handler refuses it again (maxAttempts 1): dead once more, after a second call.
      await waitFor(() => expect(seen).toHaveLength(2))
      expect(seen.map((s) => [s.id, s.attempt, s.queue, s.headers])).toEqual([
        [id, 1, "resize", { reason: "test", "x-k": "v" }],
        [id, 1, "resize", { reason: "test", "x-k": "v" }],
      ])
    },
  )

  it("are kept in dead letters across a restart, and delivered by a replay after it", async () => {
    const dir = await tempDir()
    const sender = await openSender({ journal: dir, maxAttempts: 1 })
    const worker = await openWorker(sender.endpoint, {
      handler: () => {
        throw new Error("no")
      },
    })
    const dead = once(sender, "message:dead")
    const id = await sender.send("poison", { headers: { reason: "test" } })
    await dead
    await worker.close()
    await sender.close()

    const again = await openSender({ journal: dir })
    expect((await again.deadLetters()).map((l) => [l.id, l.headers])).toEqual([
      [id, { reason: "test" }],
    ])
    const { seen, handler } = recorder()
    await openWorker(again.endpoint, { handler })
    expect(await again.replay([id])).toEqual([id])
    await again.drained()
    expect(seen.map((s) => [s.id, s.attempt, s.headers])).toEqual([[id, 1, { reason: "test" }]])
    expect(await again.deadLetters()).toEqual([])
  })
})

describe("the headers option is checked", () => {
  const lone = "\ud800"
  const many = Object.fromEntries(Array.from({ length: MAX_HEADERS + 1 }, (_, i) => [`h${i}`, ""]))
  const big = { a: "x".repeat(MAX_HEADERS_BYTES) }
  const cases: [string, unknown, typeof TypeError | typeof RangeError][] = [
    ["a number", 5, TypeError],
    ["a string", "a=b", TypeError],
    ["null", null, TypeError],
    ["an array", [["a", "b"]], TypeError],
    ["a Map", new Map([["a", "b"]]), TypeError],
    ["a non-string value", { a: 1 }, TypeError],
    ["an undefined value", { a: undefined }, TypeError],
    ["an empty name", { "": "v" }, TypeError],
    [`more than ${MAX_HEADERS} entries`, many, RangeError],
    ["more than 64 KiB", big, RangeError],
    ["a lone surrogate in a value", { a: `x${lone}` }, RangeError],
    ["a lone surrogate in a name", { [`n${lone}`]: "v" }, RangeError],
  ]

  it.each(cases)("%s: refused by send() and request(), naming 'headers'", async (_, h, Err) => {
    const sender = await openSender()
    const headers = h as Record<string, string>
    const sent = sender.send("p", { headers })
    await expect(sent).rejects.toThrow(Err)
    await expect(sent).rejects.toThrow(/headers/)
    const asked = sender.request("p", { headers, timeout: 1000 })
    await expect(asked).rejects.toThrow(Err)
    await expect(asked).rejects.toThrow(/headers/)
    expect(sender.stats().sent).toBe(0)
  })

  it("takes exactly 64 entries, and headers of 64 KiB in all", async () => {
    const sender = await openSender()
    const exactly = Object.fromEntries(Array.from({ length: MAX_HEADERS }, (_, i) => [`h${i}`, ""]))
    await expect(sender.send("p", { headers: exactly })).resolves.toEqual(expect.any(String))
    // 6 bytes of lengths per entry, as stored
    const full = { a: "x".repeat(MAX_HEADERS_BYTES - 6 - 1) }
    await expect(sender.send("p", { headers: full })).resolves.toEqual(expect.any(String))
  })

  it("counts against maxMessageSize: a payload that fits alone but not with its headers is PIRATE_TOO_LARGE", async () => {
    const maxMessageSize = 1024
    const sender = await openSender({ maxMessageSize })
    const payload = "p".repeat(900) // msgpack: 3 bytes of header, 903 in all
    const headers = { "x-big": "h".repeat(200) }
    await expect(sender.send(payload)).resolves.toEqual(expect.any(String))
    await expect(sender.send(payload, { headers: { a: "b" } })).resolves.toEqual(expect.any(String))
    await expect(sender.send(payload, { headers })).rejects.toMatchObject({
      code: "PIRATE_TOO_LARGE",
    })
    await expect(sender.request(payload, { headers, timeout: 1000 })).rejects.toMatchObject({
      code: "PIRATE_TOO_LARGE",
    })
    expect(sender.stats().sent).toBe(2)
  })
})

describe("headers on the wire", () => {
  /** A hand-made PPX worker announcing `version`: connected, READY sent, WELCOME received. */
  async function rawWorker(
    endpoint: string,
    version: number,
  ): Promise<{ dealer: Dealer; inbox: Inbox; welcomeVersion: number }> {
    const dealer = new Dealer({ linger: 0 })
    onTestFinished(() => dealer.close())
    const inbox = new Inbox(dealer)
    dealer.connect(endpoint)
    await dealer.send(encodeReady({ version, credit: 16, heartbeatInterval: 60_000, liveness: 3 }))
    const welcome = await inbox.waitFor((m) => isCommand(m, PPX.WELCOME), "WELCOME")
    return { dealer, inbox, welcomeVersion: decodeWelcome(welcome[1]).version }
  }

  /** The ids of a TASKS message, in order. */
  const idsOf = (m: readonly Buffer[]): string[] =>
    (unpackEnvelopes(m[1]) ?? []).map((e) => decodeEnvelope(e)?.id ?? "?")

  it("a PPX/1 worker gets TASKS of exactly 3 frames, headers or not", async () => {
    const sender = await openSender()
    const { inbox, welcomeVersion } = await rawWorker(sender.endpoint, 1)
    expect(welcomeVersion).toBe(1)
    const ids = [
      await sender.send("a", { headers: { k: "v" } }),
      await sender.send("b"),
      await sender.send("c", { headers: { traceparent: "x", other: "y" } }),
    ]
    const tasks = (): Buffer[][] => inbox.messages.filter((m) => isCommand(m, PPX.TASKS))
    await waitFor(() => expect(tasks().flatMap(idsOf)).toEqual(ids))
    for (const m of tasks()) expect(m).toHaveLength(3)
    for (const m of inbox.messages) expect(isCommand(m, PPX.TASKM)).toBe(false)
    const bodies = tasks().flatMap((m) => unpackBodies(m[2], idsOf(m).length) ?? [])
    expect(bodies.map((b) => msgpackCodec.decode(b))).toEqual(["a", "b", "c"])
  })

  it("a PPX/2 worker gets the metas frame, one record per task, that decodes to the headers", async () => {
    const sender = await openSender()
    const { inbox, welcomeVersion } = await rawWorker(sender.endpoint, 2)
    expect(welcomeVersion).toBe(2)
    const sent = [
      {
        id: await sender.send("a", { headers: { k: "v", "x-ü": "✓" } }),
        headers: { k: "v", "x-ü": "✓" },
      },
      { id: await sender.send("b"), headers: undefined },
      { id: await sender.send("c", { headers: { one: "1" } }), headers: { one: "1" } },
    ]
    const tasks = (): Buffer[][] => inbox.messages.filter((m) => isCommand(m, PPX.TASKS))
    await waitFor(() => expect(tasks().flatMap(idsOf)).toEqual(sent.map((s) => s.id)))
    const got = new Map<string, Readonly<Record<string, string>> | undefined>()
    for (const m of tasks()) {
      const ids = idsOf(m)
      if (m.length === 3) {
        // No task of this batch has a queue or headers.
        for (const id of ids) got.set(id, undefined)
        continue
      }
      expect(m).toHaveLength(4)
      const metas = m[3] as Buffer
      const bounds = recordBounds(metas, ids.length, 4)
      expect(bounds, "one meta record per task").not.toBeNull()
      ids.forEach((id, i) => {
        const meta = decodeTaskMeta(metas, bounds?.[2 * i] as number, bounds?.[2 * i + 1] as number)
        expect(meta).not.toBeNull()
        expect(meta?.queue).toBeUndefined() // the default queue is left out
        got.set(id, meta?.headers)
      })
    }
    for (const s of sent) expect(got.get(s.id)).toEqual(s.headers)
    expect(tasks().some((m) => m.length === 4)).toBe(true)
  })

  it("a worker drops TASKS whose metas frame is malformed, and goes on", async () => {
    const router = new Router({ linger: 0 })
    onTestFinished(() => router.close())
    await router.bind("tcp://127.0.0.1:*")
    const inbox = new Inbox(router)
    const { seen, handler } = recorder()
    const worker = await openWorker(router.lastEndpoint as string, { handler })
    const errors: unknown[] = []
    worker.on("error", (e) => errors.push(e))
    const ready = await inbox.waitFor((m) => m.length === 2 && m[1]?.[0] === PPP.READY, "READY")
    const id = ready[0] as Buffer
    await router.send([
      id,
      Buffer.from([PPX.WELCOME]),
      packMeta({ version: 2, heartbeatInterval: 60_000, liveness: 3 }),
    ])
    await once(worker, "sender:ready")

    let n = 0
    const task = (metas: Buffer): Buffer[] => {
      n++
      return [
        id,
        FRAME_TASKS,
        packEnvelopes([encodeEnvelope(`m${n}`, 1)]),
        packBodies([msgpackCodec.encode(`payload ${n}`)]),
        metas,
      ]
    }
    const record = (value: unknown): Buffer => packMeta(value)
    const malformed: Buffer[] = [
      Buffer.from([0x00, 0x00]), // a record length cut short
      packMetas([Buffer.alloc(0), Buffer.alloc(0)]), // two records for one task
      packMetas([Buffer.from([0x81, 0xa1])]), // msgpack cut short
      packMetas([Buffer.from([0x92, 0x01, 0x02])]), // msgpack, but an array
      packMetas([record({ headers: { a: 1 } })]), // a header that is not a string
      packMetas([record({ headers: ["a", "b"] })]), // headers that are not a map
      packMetas([record({ headers: { "": "v" } })]), // an empty name
      packMetas([record({ queue: "" })]), // an empty queue name
    ]
    for (const metas of malformed) await router.send(task(metas))
    // Then a good one: read after the bad ones on the same connection.
    await router.send(task(packMetas([record({ headers: { ok: "yes" } })])))
    const acks = await inbox.waitFor((m) => isCommand(m.slice(1), PPX.ACKS), "ACKS")
    expect(idsOf(acks.slice(1))).toEqual([`m${n}`])
    expect(worker.stats().dropped).toBe(malformed.length)
    expect(seen.map((s) => [s.id, s.headers])).toEqual([[`m${n}`, { ok: "yes" }]])
    expect(errors).toEqual([])
    expect(worker.status).toBe("open")
  })
})
