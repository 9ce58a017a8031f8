/**
 * Codec agreement: a worker states its codec in READY, the sender its own in WELCOME, and a
 * mismatch is refused at once with `PIRATE_CODEC_MISMATCH` naming both codecs, on both sides
 * (before, a msgpack sender with a raw worker "worked" silently, and the reverse dead-lettered
 * every message with a msgpack error). A peer that states no codec (an older one, a plain PPP
 * worker, a custom codec without a name) is never refused.
 */
import { once } from "node:events"
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer, Router } from "zeromq"
import {
  codecName,
  msgpackCodec,
  rawCodec,
  resolveCodec,
  type Codec,
  type CodecOption,
} from "../../lib/codec.js"
import { PirateError } from "../../lib/errors.js"
import {
  PPX,
  decodeReady,
  decodeWelcome,
  encodeEnvelope,
  encodeReady,
  encodeWelcome,
  packBodies,
  packEnvelopes,
} from "../../lib/protocol.js"
import { Worker, type Sender, type WorkerOptions } from "../../patterns/index.js"
import { openSender } from "../helpers/paranoid.js"
import { waitFor } from "../helpers/wait.js"

const signal = (ms = 5_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })
const HELLO = { version: PPX.VERSION, credit: 4, heartbeatInterval: 100, liveness: 3 } as const

/** A JSON codec of our own, named "json". */
const json: Codec = {
  name: "json",
  encode: (value) => Buffer.from(JSON.stringify(value)),
  decode: (frame) => JSON.parse(frame.toString()) as unknown,
}

/**
 * The next `sender:lost` of `worker`. Not `events.once()`, which rejects on the `error` that a
 * refusal emits first.
 */
function nextLost(worker: Worker): Promise<{ reason: string; reconnectIn: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no sender:lost within 5 s")), 5000)
    worker.once("sender:lost", (e) => {
      clearTimeout(timer)
      resolve(e)
    })
  })
}

/** Every error `emitter` emits from now on. */
function errors(emitter: Sender): Error[] {
  const seen: Error[] = []
  emitter.on("error", (err) => seen.push(err))
  return seen
}

/**
 * Opens a worker with fast heartbeats and a short reconnect, its `error`s (if `errs` is given)
 * collected from before it opens; closed when the test finishes.
 */
async function openWorker(
  connect: string,
  options: Partial<WorkerOptions> & Pick<WorkerOptions, "handler">,
  errs?: Error[],
): Promise<Worker> {
  const worker = new Worker({
    connect,
    heartbeatInterval: 100,
    liveness: 3,
    reconnect: { initial: 50, max: 400 },
    closeTimeout: 1000,
    ...options,
  })
  if (errs) worker.on("error", (err) => errs.push(err))
  onTestFinished(() => worker.close())
  await worker.open()
  return worker
}

/** A raw DEALER connected to `endpoint`; closed when the test finishes. */
function dealer(endpoint: string): Dealer {
  const d = new Dealer({ linger: 0, receiveTimeout: 5000 })
  onTestFinished(() => d.close())
  d.connect(endpoint)
  return d
}

/** The next message of `d` that is not a HEARTBEAT. */
async function next(d: Dealer): Promise<Buffer[]> {
  for (;;) {
    const msg = await d.receive()
    if (!(msg.length === 1 && msg[0]?.length === 1 && msg[0][0] === 0x02)) return msg
  }
}

/**
 * A sender with codec `senderCodec` holding one message, and a worker with codec `workerCodec`:
 * both report the mismatch at once, and the message is neither delivered nor dead-lettered.
 */
async function refusedBothWays(
  senderCodec: CodecOption,
  workerCodec: CodecOption,
  payload: unknown,
  names: [sender: string, worker: string],
): Promise<void> {
  const sender = await openSender({ codec: senderCodec, retryBackoff: { initial: 1, max: 1 } })
  const senderErrors = errors(sender)
  const dead: string[] = []
  sender.on("message:dead", (e) => dead.push(e.error))
  await sender.send(payload)
  const calls: unknown[] = []
  const senderRefused = once(sender, "error", signal())
  const workerErrors: Error[] = []
  const worker = new Worker({
    connect: sender.endpoint,
    codec: workerCodec,
    heartbeatInterval: 100,
    reconnect: { initial: 50, max: 400 },
    handler: (p) => calls.push(p),
  })
  worker.on("error", (err) => workerErrors.push(err))
  const lost = nextLost(worker)
  onTestFinished(() => worker.close())
  await worker.open()
  const [senderError] = (await senderRefused) as [PirateError]
  const { reason, reconnectIn } = await lost
  const [senderName, workerName] = names
  expect(senderError).toBeInstanceOf(PirateError)
  expect(senderError.code).toBe("PIRATE_CODEC_MISMATCH")
  expect(senderError.message).toContain(`"${senderName}"`)
  expect(senderError.message).toContain(`"${workerName}"`)
  expect(workerErrors).toHaveLength(1)
  expect(workerErrors[0]).toMatchObject({ code: "PIRATE_CODEC_MISMATCH" })
  expect(workerErrors[0]?.message).toContain(`"${senderName}"`)
  expect(workerErrors[0]?.message).toContain(`"${workerName}"`)
  expect(reason).toBe(workerErrors[0]?.message)
  // No hammering: the next try waits the longest reconnect delay (400 ms, jitter 0.2).
  expect(reconnectIn).toBeGreaterThanOrEqual(320)
  expect(senderErrors).toHaveLength(1)
  // Nothing was handed out, run or dead-lettered: the message waits for a worker that agrees.
  expect(sender.stats()).toMatchObject({
    refused: 1,
    workers: 0,
    inFlight: 0,
    ready: 1,
    dead: 0,
    redelivered: 0,
  })
  expect(dead).toEqual([])
  expect(calls).toEqual([])
  expect(worker.stats()).toMatchObject({ received: 0, nacked: 0 })
  expect(worker.stats().sessions[0]?.refused).toBe(workerErrors[0]?.message)
  expect(sender.metrics()).toMatch(/^pirate_sender_refused(_total)? 1$/m)
  // A worker that agrees takes it.
  const taken = once(sender, "worker:ready", signal())
  const good = await openWorker(sender.endpoint, { codec: senderCodec, handler: () => "done" })
  await taken
  await sender.drained()
  expect(sender.stats()).toMatchObject({ acked: 1, dead: 0 })
  expect(good.stats().sessions[0]?.refused).toBeUndefined()
}

describe("codec agreement between Sender and Worker", () => {
  it("refuses a raw worker of a msgpack sender at once, both sides naming both codecs", async () => {
    await refusedBothWays("msgpack", "raw", Buffer.from("bytes"), ["msgpack", "raw"])
  })

  it("refuses a msgpack worker of a raw sender at once: no task, no dead letter", async () => {
    await refusedBothWays("raw", "msgpack", Buffer.from("bytes"), ["raw", "msgpack"])
  })

  it("refuses a worker with a named custom codec against a msgpack sender", async () => {
    await refusedBothWays("msgpack", json, { a: 1 }, ["msgpack", "json"])
  })

  it("serves workers whose codec matches: msgpack, raw and a named custom codec", async () => {
    for (const [codec, payload, reply] of [
      ["msgpack", { n: 1 }, { ok: 1 }],
      ["raw", Buffer.from("x"), Buffer.from("y")],
      [json, { n: 2 }, { ok: 2 }],
    ] as const) {
      const sender = await openSender({ codec })
      const senderErrors = errors(sender)
      const workerErrors: Error[] = []
      const worker = await openWorker(
        sender.endpoint,
        { codec, handler: () => reply },
        workerErrors,
      )
      expect(await sender.request(payload)).toEqual(reply)
      expect(sender.stats().refused).toBe(0)
      expect(worker.stats().sessions[0]).toMatchObject({ protocol: "ppx" })
      expect(worker.stats().sessions[0]?.refused).toBeUndefined()
      expect([...senderErrors, ...workerErrors]).toEqual([])
    }
  })

  it("never refuses a custom codec without a name", async () => {
    // msgpack under another, unnamed, codec: it cannot be checked, so it is not.
    const unnamed: Codec = {
      encode: (v) => msgpackCodec.encode(v),
      decode: (f) => msgpackCodec.decode(f),
    }
    expect(codecName(unnamed)).toBeUndefined()
    const sender = await openSender()
    const worker = await openWorker(sender.endpoint, { codec: unnamed, handler: (p) => p })
    expect(await sender.request("echo")).toBe("echo")
    expect(sender.stats().refused).toBe(0)
    expect(worker.stats().sessions[0]?.refused).toBeUndefined()
  })

  it("serves a plain PPP worker, which states no codec", async () => {
    const sender = await openSender()
    const worker = await openWorker(sender.endpoint, { protocol: "ppp", handler: (p) => p })
    expect(await sender.request("plain")).toBe("plain")
    expect(sender.stats().refused).toBe(0)
    expect(worker.stats().sessions[0]).toMatchObject({ protocol: "ppp" })
  })

  it("reports the mismatch once per streak on the worker, once per connection on the sender", async () => {
    const sender = await openSender()
    const senderErrors = errors(sender)
    const workerErrors: Error[] = []
    const worker = await openWorker(
      sender.endpoint,
      { codec: "raw", reconnect: { initial: 10, max: 100 }, handler: () => undefined },
      workerErrors,
    )
    // The worker tries again after reconnect.max (100 ms) and is refused again: the sender
    // counts each connection, the worker reports the same refusal only once.
    await waitFor(() => expect(sender.stats().refused).toBeGreaterThanOrEqual(2))
    expect(senderErrors.length).toBe(sender.stats().refused)
    expect(workerErrors).toHaveLength(1)
    // Refused twice: the first connection and at least one more (a third may be under way).
    expect(worker.stats().reconnects).toBeGreaterThanOrEqual(1)
    expect(worker.status).toBe("open")
  })

  it("stops the session without an 'error' listener on the worker (no crash)", async () => {
    const sender = await openSender()
    const worker = await openWorker(sender.endpoint, { codec: "raw", handler: () => undefined })
    await waitFor(() =>
      expect(worker.stats().sessions[0]?.refused).toMatch(
        /"msgpack" codec and this worker the "raw" codec/,
      ),
    )
    expect(worker.status).toBe("open")
  })
})

describe("codec agreement on the wire", () => {
  it("serves a PPX worker that states no codec (an older peer) and tells it ours in WELCOME", async () => {
    const sender = await openSender()
    const d = dealer(sender.endpoint)
    await d.send(encodeReady({ ...HELLO, version: 1 }))
    const [cmd, meta] = await next(d)
    expect(cmd?.[0]).toBe(PPX.WELCOME)
    expect(decodeWelcome(meta)).toMatchObject({ version: 1, codec: "msgpack" })
    await sender.send("task")
    const [tasks] = await next(d)
    expect(tasks?.[0]).toBe(PPX.TASKS)
    expect(sender.stats()).toMatchObject({ refused: 0, workers: 1, inFlight: 1 })
  })

  it("answers a READY stating another codec with a WELCOME stating ours, and never takes the connection as a worker", async () => {
    const sender = await openSender()
    const senderErrors = errors(sender)
    await sender.send("waits")
    const d = dealer(sender.endpoint)
    await d.send(encodeReady({ ...HELLO, codec: "raw", started: true, single: true }))
    const [cmd, meta] = await next(d)
    expect(cmd?.[0]).toBe(PPX.WELCOME)
    const welcome = decodeWelcome(meta)
    expect(welcome).toMatchObject({ version: PPX.VERSION, codec: "msgpack" })
    // Nothing is negotiated with a refused worker.
    expect(welcome.started).toBeUndefined()
    expect(welcome.single).toBeUndefined()
    // Its HEARTBEAT must not register it as a plain PPP worker.
    await d.send(Buffer.from([0x02]))
    // Frames of one connection are read in order: once this one is counted, the others were.
    await d.send(Buffer.from([0x7f]))
    await waitFor(() => expect(sender.stats().dropped).toBe(1))
    expect(sender.stats()).toMatchObject({ refused: 1, workers: 0, inFlight: 0, ready: 1 })
    // A second READY on the connection is refused again, and not counted twice.
    await d.send(encodeReady({ ...HELLO, codec: "raw" }))
    const [again] = await next(d)
    expect(again?.[0]).toBe(PPX.WELCOME)
    expect(sender.stats()).toMatchObject({ refused: 1, workers: 0, inFlight: 0, ready: 1 })
    expect(senderErrors).toHaveLength(1)
    expect(senderErrors[0]?.message).toMatch(
      /^worker [0-9a-f]+ uses the "raw" codec and this sender the "msgpack" codec/,
    )
  })

  it("takes no task from a sender whose WELCOME states another codec, even one that sends tasks", async () => {
    const r = new Router({ linger: 0, receiveTimeout: 5000 })
    onTestFinished(() => r.close())
    await r.bind("tcp://127.0.0.1:*")
    const calls: unknown[] = []
    const workerErrors: Error[] = []
    const worker = await openWorker(
      r.lastEndpoint as string,
      { codec: "raw", handler: (p) => calls.push(p) },
      workerErrors,
    )
    const [id, ready] = await r.receive()
    expect(decodeReady(ready as Buffer)).toMatchObject({ codec: "raw" })
    const lost = nextLost(worker)
    // A sender that does not refuse the worker itself: the WELCOME, then a task at once.
    await r.send([
      id as Buffer,
      ...encodeWelcome({ version: 1, heartbeatInterval: 100, liveness: 3, codec: "msgpack" }),
    ])
    await r.send([
      id as Buffer,
      Buffer.from([PPX.TASKS]),
      packEnvelopes([encodeEnvelope("m1", 1)]),
      packBodies([Buffer.from("x")]),
    ])
    await lost
    // The session's socket is closed: nothing more can be taken from it.
    expect(workerErrors).toHaveLength(1)
    expect(workerErrors[0]).toMatchObject({ code: "PIRATE_CODEC_MISMATCH" })
    expect(workerErrors[0]?.message).toMatch(
      /uses the "msgpack" codec and this worker the "raw" codec/,
    )
    expect(worker.stats()).toMatchObject({ received: 0, running: 0, queued: 0 })
    expect(worker.stats().sessions[0]).toMatchObject({ protocol: "none" })
    expect(calls).toEqual([])
  })
})

describe("codec names in READY and WELCOME", () => {
  it("carries the codec in READY and WELCOME; an absent one stays unknown", () => {
    expect(decodeReady(encodeReady({ ...HELLO, codec: "raw" }))).toEqual({ ...HELLO, codec: "raw" })
    expect(decodeReady(encodeReady(HELLO))).toEqual(HELLO)
    const w = { version: 1, heartbeatInterval: 100, liveness: 3 }
    expect(decodeWelcome(encodeWelcome({ ...w, codec: "json" })[1])).toEqual({
      ...w,
      codec: "json",
    })
    expect(decodeWelcome(encodeWelcome(w)[1])).toEqual(w)
  })

  it("refuses a codec that is not a string of 1 to 64 characters as PIRATE_PROTOCOL", () => {
    for (const codec of ["", "x".repeat(65), 7, true]) {
      const bad = { ...HELLO, codec } as unknown as typeof HELLO
      expect(() => decodeReady(encodeReady(bad))).toThrow(
        expect.objectContaining({ code: "PIRATE_PROTOCOL" }) as Error,
      )
      const welcome = encodeWelcome({
        version: 1,
        heartbeatInterval: 100,
        liveness: 3,
        codec,
      } as unknown as Parameters<typeof encodeWelcome>[0])
      expect(() => decodeWelcome(welcome[1])).toThrow(
        expect.objectContaining({ code: "PIRATE_PROTOCOL" }) as Error,
      )
    }
    expect(decodeReady(encodeReady({ ...HELLO, codec: "x".repeat(64) }))?.codec).toHaveLength(64)
  })

  it("names the built-in codecs and checks a custom codec's name", () => {
    expect(codecName(msgpackCodec)).toBe("msgpack")
    expect(codecName(rawCodec)).toBe("raw")
    expect(codecName(json)).toBe("json")
    expect(codecName({ ...json, name: "" })).toBeUndefined()
    expect(() => resolveCodec({ ...json, name: "x".repeat(65) })).toThrow(/'codec.name'/)
    expect(() => resolveCodec({ ...json, name: 3 } as unknown as Codec)).toThrow(TypeError)
  })
})
