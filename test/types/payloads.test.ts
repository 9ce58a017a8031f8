/**
 * Typed payloads: `Sender<T, R>`, `Worker<T, R>`, `LazyPirateClient<Req, Res>` and
 * `LazyPirateServer<Req, Res>`. The type checks are compiled by `npm run typecheck` (tsc covers
 * test/): every `@ts-expect-error` line must be a type error, so a wrong payload type that starts
 * to compile fails the check (an unused `@ts-expect-error` is itself an error), and so does an
 * `expectTypeOf` whose types differ. At runtime `expectTypeOf` does nothing; the last tests send
 * typed payloads end to end, without a cast, to show that the types describe what arrives.
 */
import { describe, expect, expectTypeOf, it, onTestFinished } from "vitest"
import {
  LazyPirateClient,
  LazyPirateServer,
  Sender,
  Worker,
  type JobContext,
  type JobHandler,
  type RequestContext,
  type RequestHandler,
} from "../../patterns/index.js"

interface Resize {
  file: string
  width: number
}
interface Resized {
  file: string
  bytes: number
}
interface Add {
  a: number
  b: number
}

const connect = "tcp://127.0.0.1:5556" // only in type checks: nothing connects to it

describe("Sender<T, R>", () => {
  type S = Sender<Resize, Resized>

  it("send() and request() take T; request() resolves R; decode() gives T", () => {
    expectTypeOf<S["send"]>().toBeCallableWith({ file: "a.png", width: 100 })
    expectTypeOf<S["send"]>().returns.toEqualTypeOf<Promise<string>>()
    expectTypeOf<S["request"]>().toBeCallableWith({ file: "a.png", width: 100 }, { timeout: 10 })
    expectTypeOf<S["request"]>().returns.toEqualTypeOf<Promise<Resized>>()
    expectTypeOf<S["decode"]>().returns.toEqualTypeOf<Resize>()
    expectTypeOf<typeof Sender.open<Resize, Resized>>().returns.toEqualTypeOf<Promise<S>>()
  })

  it("refuses a payload of another type", () => {
    // @ts-expect-error: `width` is missing
    expectTypeOf<S["send"]>().toBeCallableWith({ file: "a.png" })
    // @ts-expect-error: `width` is a number
    expectTypeOf<S["send"]>().toBeCallableWith({ file: "a.png", width: "100" })
    // @ts-expect-error: not a Resize at all
    expectTypeOf<S["request"]>().toBeCallableWith("a.png")
    // @ts-expect-error: the reply is a Resized, not a string
    expectTypeOf<S["request"]>().returns.toEqualTypeOf<Promise<string>>()
  })

  it("without type arguments takes anything and resolves unknown", () => {
    expectTypeOf<Sender["send"]>().toBeCallableWith(Symbol("any value compiles"))
    expectTypeOf<Sender["request"]>().returns.toEqualTypeOf<Promise<unknown>>()
    expectTypeOf<typeof Sender.open>().returns.toEqualTypeOf<Promise<Sender>>()
  })
})

describe("Worker<T, R>", () => {
  it("gives the handler a T and wants an R back", () => {
    expectTypeOf<JobHandler<Resize, Resized>>().parameters.toEqualTypeOf<[Resize, JobContext]>()
    expectTypeOf<JobHandler<Resize, Resized>>().returns.toEqualTypeOf<Resized | Promise<Resized>>()
    // Type arguments on open(): the handler's parameter is typed without an annotation.
    expectTypeOf<typeof Worker.open<Resize, Resized>>().toBeCallableWith({
      connect,
      handler: (job, ctx) => {
        expectTypeOf(job).toEqualTypeOf<Resize>()
        expectTypeOf(ctx).toEqualTypeOf<JobContext>()
        return { file: job.file, bytes: job.width * 3 }
      },
    })
    expectTypeOf(async (job: Resize) => ({ ...job, bytes: 1 })).toExtend<
      JobHandler<Resize, Resized>
    >()
  })

  it("refuses a handler of another type", () => {
    type Open = typeof Worker.open<Resize>
    type OpenR = typeof Worker.open<Resize, Resized>
    // @ts-expect-error: a Resize has no `size`
    expectTypeOf<Open>().toBeCallableWith({ connect, handler: (job) => job.size === 1 })
    // @ts-expect-error: the handler takes a string, the payloads are Resize
    expectTypeOf<Open>().toBeCallableWith({ connect, handler: (s: string) => s })
    // @ts-expect-error: the reply misses `bytes`
    expectTypeOf<OpenR>().toBeCallableWith({ connect, handler: (job) => job })
    // @ts-expect-error: an async handler must resolve a Resized too
    expectTypeOf(async (job: Resize) => job).toExtend<JobHandler<Resize, Resized>>()
  })

  it("without type arguments gives the handler unknown", () => {
    expectTypeOf<JobHandler>().parameter(0).toEqualTypeOf<unknown>()
    expectTypeOf<typeof Worker.open>().toBeCallableWith({
      connect,
      handler: (payload) => {
        expectTypeOf(payload).toEqualTypeOf<unknown>()
        return payload
      },
    })
  })
})

describe("LazyPirateClient<Req, Res> and LazyPirateServer<Req, Res>", () => {
  type C = LazyPirateClient<Add, number>

  it("request() takes Req and resolves Res; the server's handler gets Req", () => {
    expectTypeOf<C["request"]>().toBeCallableWith({ a: 1, b: 2 })
    expectTypeOf<C["request"]>().returns.toEqualTypeOf<Promise<number>>()
    expectTypeOf<typeof LazyPirateClient.open<Add, number>>().returns.toEqualTypeOf<Promise<C>>()
    expectTypeOf<RequestHandler<Add, number>>().parameters.toEqualTypeOf<[Add, RequestContext]>()
    expectTypeOf<RequestHandler<Add, number>>().returns.toEqualTypeOf<number | Promise<number>>()
    expectTypeOf<typeof LazyPirateServer.open<Add, number>>().toBeCallableWith({
      bind: "tcp://127.0.0.1:*",
      handler: (req) => req.a + req.b,
    })
    expectTypeOf(
      new LazyPirateServer({ bind: "tcp://127.0.0.1:*", handler: (req: Add) => req.a + req.b }),
    ).toEqualTypeOf<LazyPirateServer<Add, number>>()
  })

  it("refuses a request or a handler of another type", () => {
    // @ts-expect-error: `b` is missing
    expectTypeOf<C["request"]>().toBeCallableWith({ a: 1 })
    // @ts-expect-error: the reply is a number
    expectTypeOf<C["request"]>().returns.toEqualTypeOf<Promise<string>>()
    type Open = typeof LazyPirateServer.open<Add, number>
    // @ts-expect-error: the handler must answer a number
    expectTypeOf<Open>().toBeCallableWith({ bind: "x", handler: (req) => `${req.a}` })
    type OpenReq = typeof LazyPirateServer.open<Add>
    // @ts-expect-error: an Add has no `c`
    expectTypeOf<OpenReq>().toBeCallableWith({ bind: "x", handler: (req) => req.c === 1 })
  })

  it("without type arguments take and give unknown", () => {
    expectTypeOf<LazyPirateClient["request"]>().returns.toEqualTypeOf<Promise<unknown>>()
    expectTypeOf<RequestHandler>().parameter(0).toEqualTypeOf<unknown>()
  })
})

describe("typed payloads at runtime", () => {
  it("a typed sender and worker exchange Resize and Resized without a cast", async () => {
    const sender = await Sender.open<Resize, Resized>({ bind: "tcp://127.0.0.1:*" })
    onTestFinished(() => sender.close())
    const worker = await Worker.open<Resize, Resized>({
      connect: sender.endpoint,
      closeTimeout: 1000,
      handler: (job) => ({ file: job.file.toUpperCase(), bytes: job.width * 2 }),
    })
    onTestFinished(() => worker.close())
    const reply = await sender.request({ file: "a.png", width: 21 }, { timeout: 5000 })
    expectTypeOf(reply).toEqualTypeOf<Resized>()
    expect(reply).toEqual({ file: "A.PNG", bytes: 42 })
  })

  it("a typed Lazy Pirate client and server exchange Add and number without a cast", async () => {
    const server = await LazyPirateServer.open({
      bind: "tcp://127.0.0.1:*",
      handler: (req: Add) => req.a + req.b,
    })
    onTestFinished(() => server.close())
    const client = new LazyPirateClient<Add, number>({ connect: server.endpoint })
    onTestFinished(() => client.close())
    const sum = await client.request({ a: 1, b: 2 })
    expectTypeOf(sum).toEqualTypeOf<number>()
    expect(sum).toBe(3)
  })
})
