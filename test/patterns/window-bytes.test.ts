/**
 * `windowBytes`: the window bounds memory in payload bytes as well as in messages. With a
 * persistent journal what does not fit waits on disk (backlog) and is paged in as the window
 * frees; without one, producers wait. A window holding nothing always takes one message, however
 * large. The window's bytes are read from the core's internal sizes (`internals`).
 */
import { once } from "node:events"
import { describe, expect, it } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { ParanoidPirateQueue, Sender, type SenderOptions } from "../../patterns/index.js"
import { internals, type BackpressureEvent } from "../../patterns/paranoid-pirate/core/index.js"
import { tempDir } from "../helpers/journal-files.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

const MiB = 1024 * 1024
/**
 * Heartbeats for the workers of the large-payload cases: reading and checking megabytes from the
 * journal, on a loaded machine, can hold an event loop for longer than the helpers' 100 ms × 3.
 */
const SLOW = { heartbeatInterval: 1000, liveness: 5 } as const
const signal = (ms = 20_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

/** Payload `i` of `size` bytes: its number in the first 4 bytes, then the byte `i` repeated. */
function payload(i: number, size: number): Buffer {
  const p = Buffer.alloc(size, i & 0xff)
  p.writeUInt32BE(i, 0)
  return p
}

/** A raw-codec worker that records the number each payload starts with, in the order handled. */
async function recordingWorker(
  endpoint: string,
  handled: number[],
  options: { concurrency?: number } = {},
): Promise<void> {
  await openWorker(endpoint, {
    ...SLOW,
    ...options,
    codec: "raw",
    handler: (p) => {
      handled.push((p as Buffer).readUInt32BE(0))
      return Buffer.alloc(0)
    },
  })
}

/**
 * Samples the window's internal byte counts at every turn of the event loop: the window with the
 * spills kept in memory (one budget), and the spills being written.
 */
function watchWindow(sender: Sender): { peak: { window: number; spilling: number }; stop(): void } {
  const peak = { window: 0, spilling: 0 }
  const sample = (): void => {
    const sizes = sender[internals]()
    peak.window = Math.max(peak.window, (sizes["windowBytes"] ?? 0) + (sizes["keptBytes"] ?? 0))
    peak.spilling = Math.max(peak.spilling, sizes["spillingBytes"] ?? 0)
  }
  let on = true
  const loop = (): void => {
    if (!on) return
    sample()
    setImmediate(loop)
  }
  loop()
  return {
    peak,
    stop: () => {
      sample()
      on = false
    },
  }
}

async function journaled(options: Partial<SenderOptions>): Promise<Sender> {
  const journal = new LevelJournal(await tempDir("pirate-window-bytes-"))
  return openSender({ codec: "raw", journal, ...options })
}

/**
 * Sends `count` payloads of `size` with no worker, checks they all resolve with the window in
 * bounds and the rest as backlog, then connects a worker and checks every payload arrives, in
 * send order, byte for byte.
 */
async function offlineThenDeliver(
  count: number,
  size: number | ((i: number) => number),
  windowBytes: number,
): Promise<void> {
  const sizeOf = typeof size === "number" ? () => size : size
  const sender = await journaled({ windowBytes })
  const lost: unknown[] = []
  sender.on("worker:lost", (e) => lost.push(e))
  sender.on("message:requeued", (e) => lost.push(e))
  const watch = watchWindow(sender)
  const ids: string[] = []
  for (let i = 0; i < count; i++) ids.push(await sender.send(payload(i, sizeOf(i))))
  // The first messages, as long as they fit, are in the window; the rest wait on disk.
  let inWindow = 0
  let bytes = 0
  while (inWindow < count && bytes + sizeOf(inWindow) <= windowBytes) bytes += sizeOf(inWindow++)
  expect(sender.stats()).toMatchObject({
    inWindow,
    inWindowBytes: bytes,
    backlog: count - inWindow,
    waiting: 0,
  })
  expect(sender[internals]()["windowBytes"]).toBe(bytes)

  const handled: number[] = []
  const wrong: number[] = []
  await openWorker(sender.endpoint, {
    ...SLOW,
    codec: "raw",
    concurrency: 1,
    handler: (p) => {
      const body = p as Buffer
      const i = body.readUInt32BE(0)
      if (!body.equals(payload(i, sizeOf(i)))) wrong.push(i)
      handled.push(i)
      return Buffer.alloc(0)
    },
  })
  await sender.drained(signal(60_000))
  watch.stop()
  expect(lost, "workers lost, messages requeued").toEqual([])
  expect(wrong, "payloads that arrived changed").toEqual([])
  expect(handled, "delivered once each, in send order").toEqual(ids.map((_, i) => i))
  expect(watch.peak.window, "window and kept backlog bytes").toBeLessThanOrEqual(windowBytes)
  expect(watch.peak.spilling, "bytes held while written as backlog").toBeLessThanOrEqual(
    windowBytes,
  )
  expect(sender.stats()).toMatchObject({ acked: count, backlog: 0, inWindow: 0, inWindowBytes: 0 })
  const held = Object.entries(sender[internals]()).filter(([, n]) => n !== 0)
  expect(Object.fromEntries(held), "internal structures still holding something").toEqual({})
}

describe("windowBytes with a persistent journal (store and forward)", () => {
  it("200 × 1 MiB sends with no worker all resolve, the window within windowBytes; then all are delivered in order", async () => {
    await offlineThenDeliver(200, MiB, 16 * MiB)
  }, 90_000)

  it("8 MiB payloads: the window holds what fits in windowBytes, the rest waits on disk", async () => {
    await offlineThenDeliver(12, 8 * MiB, 32 * MiB)
  }, 90_000)

  it("payloads of mixed sizes: pages stop at windowBytes whatever the backlog's mean size", async () => {
    // Runs of small and of large payloads: a page read at the mean size holds more large ones
    // than fit, and must stop at the window's bytes.
    await offlineThenDeliver(120, (i) => (i % 20 < 10 ? 16 * 1024 : 2 * MiB), 8 * MiB)
  }, 90_000)

  it("a payload larger than windowBytes still goes through, alone, from the window and from disk", async () => {
    const sender = await journaled({ windowBytes: MiB })
    const ids = [
      await sender.send(payload(0, 3 * MiB)),
      await sender.send(payload(1, 3 * MiB)),
      await sender.send(payload(2, 100)),
      await sender.send(payload(3, 3 * MiB)),
    ]
    expect(sender.stats()).toMatchObject({ inWindow: 1, inWindowBytes: 3 * MiB, backlog: 3 })
    const handled: number[] = []
    await recordingWorker(sender.endpoint, handled, { concurrency: 1 })
    await sender.drained(signal())
    expect(handled).toEqual(ids.map((_, i) => i))
  }, 30_000)
})

describe("windowBytes without a journal (memory)", () => {
  it("sends wait at windowBytes with backpressure reason windowBytes, and resume when acked", async () => {
    const sender = await openSender({ codec: "raw", windowBytes: 4 * MiB })
    const events: BackpressureEvent[] = []
    sender.on("backpressure", (e) => events.push(e))
    for (let i = 0; i < 4; i++) await sender.send(payload(i, MiB))
    let resolved = 0
    const more = [4, 5, 6].map((i) => sender.send(payload(i, MiB)).then(() => resolved++))
    expect(sender.stats()).toMatchObject({ inWindow: 4, inWindowBytes: 4 * MiB, waiting: 3 })
    expect(events).toEqual([{ waiting: 1, backlog: 0, reason: "windowBytes" }])
    expect(resolved).toBe(0)
    expect(sender.metrics()).toContain(`pirate_sender_in_window_bytes ${4 * MiB}`)

    const handled: number[] = []
    const resumed = once(sender, "backpressure", signal())
    await recordingWorker(sender.endpoint, handled, { concurrency: 1 })
    expect(await resumed).toEqual([{ waiting: 0, backlog: 0, reason: "resumed" }])
    await Promise.all(more)
    await sender.drained(signal())
    expect(handled).toEqual([0, 1, 2, 3, 4, 5, 6])
    expect(sender.stats()).toMatchObject({ waiting: 0, inWindowBytes: 0, acked: 7 })
  })

  it("request() waits for room in bytes too", async () => {
    const sender = await openSender({ codec: "raw", windowBytes: 2 * MiB })
    await sender.send(payload(0, MiB))
    await sender.send(payload(1, MiB))
    const events: BackpressureEvent[] = []
    sender.on("backpressure", (e) => events.push(e))
    const reply = sender.request(payload(2, MiB), { timeout: 10_000 })
    expect(events).toEqual([{ waiting: 1, backlog: 0, reason: "windowBytes" }])
    expect(sender.stats().inWindowBytes).toBe(2 * MiB)
    await openWorker(sender.endpoint, {
      ...SLOW,
      codec: "raw",
      handler: (p) => Buffer.from(`done ${(p as Buffer).readUInt32BE(0)}`),
    })
    expect(String(await reply)).toBe("done 2")
    await sender.drained(signal())
    const held = Object.entries(sender[internals]()).filter(([, n]) => n !== 0)
    expect(Object.fromEntries(held)).toEqual({})
  })

  it("one message larger than windowBytes goes in when the window holds nothing", async () => {
    const sender = await openSender({ codec: "raw", windowBytes: MiB })
    await sender.send(payload(0, 3 * MiB)) // resolves: the window held nothing
    expect(sender.stats()).toMatchObject({ inWindow: 1, inWindowBytes: 3 * MiB })
    const second = sender.send(payload(1, 10))
    expect(sender.stats().waiting).toBe(1)
    const handled: number[] = []
    await recordingWorker(sender.endpoint, handled)
    await second
    await sender.drained(signal())
    expect(handled).toEqual([0, 1])
  })
})

describe("windowBytes validation", () => {
  it("takes a positive integer or Infinity, and names the option otherwise", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, "64"]) {
      expect(() => new Sender({ bind: "tcp://127.0.0.1:*", windowBytes: bad as number })).toThrow(
        /'windowBytes' must be a positive integer/,
      )
      expect(
        () =>
          new ParanoidPirateQueue({
            frontend: "tcp://127.0.0.1:*",
            backend: "tcp://127.0.0.1:*",
            windowBytes: bad as number,
          }),
      ).toThrow(/'windowBytes'/)
    }
    expect(() => new Sender({ bind: "tcp://127.0.0.1:*", windowBytes: Infinity })).not.toThrow()
    expect(() => new Sender({ bind: "tcp://127.0.0.1:*", windowBytes: 1 })).not.toThrow()
  })
})
