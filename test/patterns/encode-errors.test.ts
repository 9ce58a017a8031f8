/**
 * A payload the codec cannot encode rejects the call with PIRATE_ENCODE naming the problem (never
 * a RangeError "Maximum call stack size exceeded" thrown at the caller); a timeout of any
 * request is a RequestTimeoutError.
 */
import { once } from "node:events"
import { describe, expect, it, onTestFinished } from "vitest"
import { encodeError, findCycle, msgpackCodec, type Codec } from "../../lib/codec.js"
import {
  LazyPirateClient,
  LazyPirateServer,
  RequestTimeoutError,
  Sender,
  Worker,
} from "../../patterns/index.js"

const FREE = "tcp://127.0.0.1:*"

function circular(): Record<string, unknown> {
  const value: Record<string, unknown> = { a: [1, { b: 2 }] }
  ;((value["a"] as unknown[])[1] as Record<string, unknown>)["up"] = value
  return value
}

const encodeFailure = (problem: RegExp): unknown =>
  expect.objectContaining({
    name: "PirateError",
    code: "PIRATE_ENCODE",
    message: expect.stringMatching(problem) as unknown,
  })

async function openSender(options: { codec?: "raw" | Codec } = {}): Promise<Sender> {
  const sender = await Sender.open({ bind: FREE, heartbeatInterval: 100, ...options })
  onTestFinished(() => sender.close())
  return sender
}

describe("findCycle and encodeError", () => {
  it("name the path of a circular reference", () => {
    expect(findCycle(circular())).toBe("payload.a[1].up refers back to payload")
    const map = new Map<string, unknown>([["k", { list: [] as unknown[] }]])
    ;(map.get("k") as { list: unknown[] }).list.push(map)
    expect(findCycle({ m: map })).toBe('payload.m.get("k").list[0] refers back to payload.m')
    const shared = { x: 1 }
    expect(findCycle({ a: shared, b: shared, "odd key": [shared] })).toBeUndefined() // a DAG
    expect(findCycle(Buffer.alloc(4))).toBeUndefined()
  })

  it("says a value is nested too deeply when it has no cycle", () => {
    let deep: unknown[] = []
    for (let i = 0; i < 20_000; i++) deep = [deep]
    expect(() => msgpackCodec.encode(deep)).toThrow(encodeFailure(/nested too deeply/))
    expect(findCycle(deep)).toBeUndefined()
  })

  it("keeps the codec's error as cause", () => {
    const cause = new TypeError("nope")
    expect(encodeError("custom", 1, cause)).toMatchObject({
      code: "PIRATE_ENCODE",
      message: "the custom codec cannot encode the payload: nope",
      cause,
    })
  })
})

describe("Sender", () => {
  it("send() and request() reject (not throw) with PIRATE_ENCODE naming the cycle", async () => {
    const sender = await openSender()
    const sent = sender.send(circular())
    await expect(sent).rejects.toEqual(
      encodeFailure(/circular reference \(payload\.a\[1\]\.up refers back to payload\)/),
    )
    await expect(sender.request(circular())).rejects.toEqual(encodeFailure(/circular reference/))
    await expect(sender.send({ s: Symbol("x") })).rejects.toEqual(encodeFailure(/a symbol/))
    await expect(sender.send({ n: 2n ** 70n })).rejects.toEqual(encodeFailure(/beyond 64 bits/))
    expect(sender.stats().sent).toBe(0)
  })

  it("the raw codec's refusal and a custom codec's error are PIRATE_ENCODE too", async () => {
    const raw = await openSender({ codec: "raw" })
    await expect(raw.send(42)).rejects.toMatchObject({
      code: "PIRATE_ENCODE",
      cause: expect.any(TypeError) as unknown,
    })
    const failure = new Error("custom codec says no")
    const custom = await openSender({
      codec: {
        name: "picky",
        encode: () => {
          throw failure
        },
        decode: (frame) => frame,
      },
    })
    await expect(custom.send("x")).rejects.toMatchObject({
      code: "PIRATE_ENCODE",
      message: "the picky codec cannot encode the payload: custom codec says no",
      cause: failure,
    })
  })

  it("request() with a timeout rejects with a RequestTimeoutError", async () => {
    const sender = await openSender()
    const err: unknown = await sender
      .request("nobody is there", { timeout: 50 })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RequestTimeoutError)
    expect(err).toMatchObject({
      code: "PIRATE_TIMEOUT",
      timeout: 50,
      tries: 1,
      endpoints: [sender.endpoint],
      message: expect.stringContaining("within 50 ms") as unknown,
    })
  })
})

describe("Lazy Pirate and Worker", () => {
  it("LazyPirateClient.request() rejects with PIRATE_ENCODE", async () => {
    const client = new LazyPirateClient({ connect: "tcp://127.0.0.1:5555" })
    onTestFinished(() => client.close())
    await expect(client.request(circular())).rejects.toEqual(encodeFailure(/circular reference/))
    const raw = new LazyPirateClient({ connect: "tcp://127.0.0.1:5555", codec: "raw" })
    onTestFinished(() => raw.close())
    await expect(raw.request({ not: "a buffer" })).rejects.toMatchObject({
      code: "PIRATE_ENCODE",
    })
  })

  it("a reply the server cannot encode is a request:error with PIRATE_ENCODE", async () => {
    const server = await LazyPirateServer.open({ bind: FREE, handler: () => circular() })
    onTestFinished(() => server.close())
    const failed = once(server, "request:error", { signal: AbortSignal.timeout(5000) })
    const client = new LazyPirateClient({ connect: server.endpoint, timeout: 5000, retries: 1 })
    onTestFinished(() => client.close())
    await expect(client.request("x")).rejects.toMatchObject({
      code: "PIRATE_REMOTE",
      message: expect.stringMatching(/circular reference/) as unknown,
    })
    const [event] = (await failed) as [{ error: unknown }]
    expect(event.error).toEqual(encodeFailure(/circular reference/))
  })

  it("a reply the worker cannot encode nacks the job with PIRATE_ENCODE", async () => {
    const sender = await openSender()
    const worker = await Worker.open({
      connect: sender.endpoint,
      heartbeatInterval: 100,
      handler: () => ({ s: Symbol("reply") }),
    })
    onTestFinished(() => worker.close())
    const failed = once(worker, "job:failed", { signal: AbortSignal.timeout(5000) })
    await sender.send("go")
    const [event] = (await failed) as [{ error: unknown }]
    expect(event.error).toEqual(encodeFailure(/a symbol/))
  })
})
