/**
 * The sender pair in one process: states and events, `PIRATE_PASSIVE`, `stats().pair`,
 * `durability: "replicated"` with `whenAlone` both ways, the hand-over of sends a node resolved
 * alone, and option errors. The crash tests are in pair-failover.test.ts.
 */
import { once } from "node:events"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, onTestFinished, test } from "vitest"
import { Sender, Worker, type SenderOptions } from "../../patterns/index.js"
import { freePorts } from "../helpers/pair.js"
import { waitFor } from "../helpers/wait.js"

const HB = 50

interface Pair {
  dir: string
  options(role: "primary" | "backup", extra?: Partial<SenderOptions>): SenderOptions
  endpoints: string[]
}

async function pairAddresses(): Promise<Pair> {
  const dir = mkdtempSync(join(tmpdir(), "pirate-pair-"))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const [pw, pp, bw, bp] = (await freePorts(4)) as [number, number, number, number]
  const at = (port: number): string => `tcp://127.0.0.1:${port}`
  return {
    dir,
    endpoints: [at(pw), at(bw)],
    options: (role, extra = {}) => ({
      bind: at(role === "primary" ? pw : bw),
      journal: join(dir, role),
      durability: "replicated",
      heartbeatInterval: HB,
      retryBackoff: { initial: 20, max: 100 },
      ...extra,
      pair: {
        role,
        bind: at(role === "primary" ? pp : bp),
        peer: at(role === "primary" ? bp : pp),
        ...extra.pair,
      },
    }),
  }
}

async function open<T>(options: SenderOptions): Promise<Sender<T>> {
  const sender = await Sender.open<T>(options)
  onTestFinished(() => sender.close())
  return sender
}

function worker(
  pair: Pair,
  handler: (payload: { n: number }, ctx: { endpoint: string }) => unknown,
): Promise<Worker<{ n: number }>> {
  const w = new Worker<{ n: number }>({
    connect: pair.endpoints,
    heartbeatInterval: HB,
    reconnect: { initial: 20, max: 100 },
    concurrency: 64,
    handler,
  })
  onTestFinished(() => w.close())
  return w.open().then(() => w)
}

describe("a sender pair", () => {
  test("the primary becomes active and the backup passive; only the active takes sends; replicated sends reach the workers", async () => {
    const pair = await pairAddresses()
    const primary = await open<{ n: number }>(pair.options("primary"))
    const backup = await open<{ n: number }>(pair.options("backup"))
    expect(backup.state).toBe("passive")
    if (primary.state !== "active") await once(primary, "pair:active")
    await waitFor(() => expect(backup.stats().pair?.peer).toBe("alive"))
    expect(primary.stats().pair).toMatchObject({ role: "primary", state: "active" })
    expect(backup.stats().pair).toMatchObject({ role: "backup", state: "passive" })

    // The passive refuses at once.
    for (const call of [
      () => backup.send({ n: 1 }),
      () => backup.request({ n: 1 }),
      () => backup.cancel("0000000000000000"),
      () => backup.drained(),
      () => backup.replay([]),
    ])
      await expect(call()).rejects.toMatchObject({ code: "PIRATE_PASSIVE" })
    expect(primary.metrics()).toMatch(/^pirate_sender_pair_active 1$/m)
    expect(backup.metrics()).toMatch(/^pirate_sender_pair_active 0$/m)
    expect(backup.metrics()).toMatch(/^pirate_sender_pair_peer_alive 1$/m)

    const seen: number[] = []
    await worker(pair, ({ n }) => void seen.push(n))
    const ids = await Promise.all(Array.from({ length: 100 }, (_, n) => primary.send({ n })))
    expect(new Set(ids).size).toBe(100)
    // The primary's ids are even (the backup's odd): the two never draw the same one.
    for (const id of ids) expect(parseInt(id.slice(-1), 16) % 2).toBe(0)
    await primary.drained()
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, n) => n))
    // A request (kept in memory, not journaled) goes through the active too.
    await expect(primary.request({ n: 100 }, { timeout: 5000 })).resolves.toBeUndefined()
    await waitFor(() => expect(primary.stats().pair).toMatchObject({ replicated: true, lag: 0 }))
    // The passive's journal is the active's: everything acked, nothing pending.
    await waitFor(async () => expect((await backup.journal.stats()).pending).toBe(0))
  })

  test("a plain PPP worker connected to both gets work from the active only, and does not vote", async () => {
    const pair = await pairAddresses()
    const primary = await open<{ n: number }>(pair.options("primary"))
    const backup = await open<{ n: number }>(pair.options("backup"))
    if (primary.state !== "active") await once(primary, "pair:active")
    const from: string[] = []
    const w = new Worker<{ n: number }>({
      connect: pair.endpoints,
      protocol: "ppp",
      heartbeatInterval: HB,
      reconnect: { initial: 20, max: 100 },
      handler: (_payload, ctx) => void from.push(ctx.endpoint),
    })
    onTestFinished(() => w.close())
    await w.open()
    // Both senders have the worker: the passive answers its heartbeats and gives it nothing.
    await waitFor(() => {
      expect(primary.stats().workers).toBe(1)
      expect(backup.stats().workers).toBe(1)
    })
    await Promise.all(Array.from({ length: 50 }, (_, n) => primary.send({ n })))
    await primary.drained()
    expect(from).toHaveLength(50)
    expect(new Set(from)).toEqual(new Set([pair.endpoints[0]]))
    expect(w.stats().votes).toBe(0)
  })

  test('whenAlone "wait": a replicated send waits while the passive is away and resolves once it is back and caught up', async () => {
    const pair = await pairAddresses()
    const primary = await open<{ n: number }>(pair.options("primary"))
    const backup = await open<{ n: number }>(pair.options("backup"))
    if (primary.state !== "active") await once(primary, "pair:active")
    await primary.send({ n: 0 })
    await backup.close()
    await waitFor(() => expect(primary.stats().pair?.replicated).toBe(false))
    let resolved = false
    const sent = primary.send({ n: 1 }).then((id) => {
      resolved = true
      return id
    })
    // Give the send every chance to resolve wrongly: the peer is declared lost first.
    await waitFor(() => expect(primary.stats().pair?.peer).toBe("lost"), { timeout: 10_000 })
    expect(resolved).toBe(false)
    const back = await open<{ n: number }>(pair.options("backup"))
    const id = await sent
    await waitFor(async () => {
      const pending = await back.journal.pending({ limit: 10 })
      expect(pending.map((e) => e.id)).toContain(id)
    })
  })

  test('whenAlone "wait": with the passive away, sends beyond the window wait with a backpressure event, and all resolve once it is back', async () => {
    const pair = await pairAddresses()
    const opts = { window: 10 } as Partial<SenderOptions>
    const primary = await open<{ n: number }>(pair.options("primary", opts))
    const backup = await open<{ n: number }>(pair.options("backup", opts))
    if (primary.state !== "active") await once(primary, "pair:active")
    await backup.close()
    await waitFor(() => expect(primary.stats().pair?.replicated).toBe(false))
    const reasons: string[] = []
    primary.on("backpressure", ({ reason }) => reasons.push(reason))
    let resolved = 0
    const sends = Array.from({ length: 40 }, (_, n) => primary.send({ n }).then(() => resolved++))
    await waitFor(() => expect(primary.stats().waiting).toBeGreaterThan(0))
    expect(reasons).toContain("window")
    expect(resolved).toBe(0)
    // Bounded: the window and the sends being written, not the 40.
    expect(primary.stats().inWindow).toBeLessThanOrEqual(10)
    const back = await open<{ n: number }>(pair.options("backup", opts))
    await Promise.all(sends)
    expect(resolved).toBe(40)
    await waitFor(async () => expect((await back.journal.stats()).pending).toBe(40))
  })

  test('whenAlone "local": a replicated send resolves alone, with stats().pair.replicated false', async () => {
    const pair = await pairAddresses()
    const opts = { pair: { whenAlone: "local" } } as Partial<SenderOptions>
    const primary = await open<{ n: number }>(pair.options("primary", opts))
    const backup = await open<{ n: number }>(pair.options("backup", opts))
    if (primary.state !== "active") await once(primary, "pair:active")
    await backup.close()
    await waitFor(() => expect(primary.stats().pair?.replicated).toBe(false))
    await expect(primary.send({ n: 1 })).resolves.toMatch(/^[0-9a-f]{16}$/)
    expect(primary.stats().pair?.replicated).toBe(false)
  })

  test("a node that resolved sends alone hands them over when it returns as passive", async () => {
    const pair = await pairAddresses()
    const opts = { pair: { whenAlone: "local" } } as Partial<SenderOptions>
    // The primary starts alone: a worker's vote makes it active once its peer was silent.
    const primary = await Sender.open<{ n: number }>(pair.options("primary", opts))
    const seen: number[] = []
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    onTestFinished(() => release())
    await worker(pair, async ({ n }, ctx) => {
      // Whatever the primary dispatches is held: its sends stay pending in its journal (and
      // were they dispatched again by the primary, they would never be seen).
      if (ctx.endpoint === pair.endpoints[0]) return gate
      seen.push(n)
    })
    if (primary.state !== "active") await once(primary, "pair:active")
    const alone = await Promise.all(Array.from({ length: 10 }, (_, n) => primary.send({ n })))
    await primary.close()
    // The backup starts alone in turn and is made active by the worker's vote.
    const backup = await open<{ n: number }>(pair.options("backup", opts))
    if (backup.state !== "active") await once(backup, "pair:active")
    // The primary returns: it sees an active peer, hands over its 10 sends, becomes passive.
    const returned = await open<{ n: number }>(pair.options("primary", opts))
    if (returned.state !== "passive") await once(returned, "pair:passive")
    await waitFor(() => expect(new Set(seen)).toEqual(new Set(alone.map((_, n) => n))), {
      timeout: 10_000,
    })
    expect(returned.state).toBe("passive")
  })

  test("two senders configured with the same role: PIRATE_PAIR_CONFIG, and neither becomes active through the other", async () => {
    const pair = await pairAddresses()
    const a = new Sender<{ n: number }>(pair.options("primary"))
    // The other one binds the backup's addresses but says it is a primary too.
    const b = new Sender<{ n: number }>({
      ...pair.options("backup"),
      pair: { ...pair.options("backup").pair!, role: "primary" },
    })
    const errors: string[] = []
    for (const s of [a, b]) {
      s.on("error", (err) => errors.push((err as { code?: string }).code ?? err.message))
      s.on("pair:active", () => errors.push("active"))
      onTestFinished(() => s.close())
    }
    await Promise.all([a.open(), b.open()])
    await waitFor(() => expect(errors.filter((e) => e === "PIRATE_PAIR_CONFIG")).toHaveLength(2))
    expect(errors).not.toContain("active")
    expect([a.state, b.state]).toEqual(["passive", "passive"])
  })

  test("option errors name the option", () => {
    const base = { bind: "tcp://127.0.0.1:*" }
    expect(() => new Sender({ ...base, durability: "replicated" })).toThrow(/pair/)
    const pair = { role: "primary", bind: "tcp://127.0.0.1:*", peer: "tcp://127.0.0.1:1" } as const
    expect(() => new Sender({ ...base, pair: { ...pair, role: "main" as "primary" } })).toThrow(
      /pair\.role/,
    )
    expect(() => new Sender({ ...base, pair: { ...pair, timeout: 0 } })).toThrow(/pair\.timeout/)
    expect(() => new Sender({ ...base, pair: { ...pair, whenAlone: "x" as "wait" } })).toThrow(
      /pair\.whenAlone/,
    )
    expect(() => new Sender({ ...base, pair: { ...pair, sink: 1 } as typeof pair })).toThrow(/sync/)
    expect(() => new Sender({ ...base, pair: { ...pair, peer: "" } })).toThrow(/pair\.peer/)
  })
})
