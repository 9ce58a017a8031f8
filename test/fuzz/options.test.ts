/**
 * Wrong options fail at construction, synchronously, with a TypeError or RangeError whose message
 * names the option, for every public class; and no constructor does I/O.
 */
import fc from "fast-check"
import { describe, expect, it, onTestFinished } from "vitest"
import {
  LAZY_PIRATE_CLIENT_DEFAULTS,
  LAZY_PIRATE_SERVER_DEFAULTS,
  LazyPirateClient,
  LazyPirateServer,
  LevelJournal,
  MemoryJournal,
  ParanoidPirateQueue,
  Sender,
  WORKER_DEFAULTS,
  Worker,
} from "../../patterns/index.js"
import { deadEndpoint } from "../helpers/lazy-helpers.js"
import { waitFor } from "../helpers/wait.js"
import { guardProcess } from "./guard.js"
import { gate } from "./peers.js"

guardProcess()

type Options = Record<string, unknown>
interface Role {
  readonly make: (options: unknown) => unknown
  readonly base: Options
}

const EP = "tcp://127.0.0.1:5555"
const handler = (p: unknown): unknown => p
const roles = {
  Sender: { make: (o) => new Sender(o as never), base: { bind: EP } },
  ParanoidPirateQueue: {
    make: (o) => new ParanoidPirateQueue(o as never),
    base: { frontend: EP, backend: "tcp://127.0.0.1:5556" },
  },
  Worker: { make: (o) => new Worker(o as never), base: { connect: EP, handler } },
  LazyPirateServer: { make: (o) => new LazyPirateServer(o as never), base: { bind: EP, handler } },
  LazyPirateClient: { make: (o) => new LazyPirateClient(o as never), base: { connect: EP } },
  LevelJournal: { make: (o) => new LevelJournal(o as never), base: { path: "/tmp/unused" } },
} satisfies Record<string, Role>
type RoleName = keyof typeof roles

/** Calls `fn` and returns what it threw (fails if it did not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return expect.fail("expected a TypeError or RangeError, nothing was thrown")
}

function expectRefusal(
  err: unknown,
  kind: "TypeError" | "RangeError" | "either",
  option: string,
): void {
  const ok =
    kind === "either"
      ? err instanceof TypeError || err instanceof RangeError
      : (err as Error).name === kind
  expect(ok, `${String(err)} is a ${kind}`).toBe(true)
  expect((err as Error).message, "the message names the option").toContain(option)
}

// [role, options (merged over the role's valid base; `replace` replaces it), error, option named]
type Row = [RoleName, Options | { replace: unknown }, "TypeError" | "RangeError", string]
const KEY = "ab".repeat(20) // a syntactically valid Z85 key (40 characters)

const rows: Row[] = [
  ["Sender", { replace: undefined }, "TypeError", "options"],
  ["Sender", { replace: "tcp://127.0.0.1:5555" }, "TypeError", "options"],
  ["Sender", { bind: undefined }, "TypeError", "'bind'"],
  ["Sender", { bind: "127.0.0.1:5555" }, "TypeError", "'bind'"],
  ["Sender", { bind: 5555 }, "TypeError", "'bind'"],
  ["Sender", { journal: 42 }, "TypeError", "'journal'"],
  ["Sender", { journal: {} }, "TypeError", "'journal'"],
  ["Sender", { durability: "disk" }, "TypeError", "'durability'"],
  ["Sender", { heartbeatInterval: 0 }, "RangeError", "'heartbeatInterval'"],
  ["Sender", { heartbeatInterval: 1.5 }, "TypeError", "'heartbeatInterval'"],
  ["Sender", { heartbeatInterval: "1000" }, "TypeError", "'heartbeatInterval'"],
  ["Sender", { liveness: 0 }, "RangeError", "'liveness'"],
  ["Sender", { maxAttempts: -1 }, "RangeError", "'maxAttempts'"],
  ["Sender", { ackTimeout: -1 }, "RangeError", "'ackTimeout'"],
  ["Sender", { window: 0 }, "RangeError", "'window'"],
  ["Sender", { maxBatch: 0 }, "RangeError", "'maxBatch'"],
  ["Sender", { maxMessageSize: -1 }, "RangeError", "'maxMessageSize'"],
  ["Sender", { sendTimeout: Number.NaN }, "TypeError", "'sendTimeout'"],
  ["Sender", { retryBackoff: { initial: -1 } }, "RangeError", "'retryBackoff.initial'"],
  ["Sender", { retryBackoff: { factor: 0.5 } }, "RangeError", "'retryBackoff.factor'"],
  ["Sender", { retryBackoff: { jitter: 2 } }, "RangeError", "'retryBackoff.jitter'"],
  ["Sender", { retryBackoff: { initial: 100, max: 10 } }, "RangeError", "'retryBackoff.max'"],
  ["Sender", { random: 4 }, "TypeError", "'random'"],
  ["Sender", { codec: "json" }, "TypeError", "'codec'"],
  ["Sender", { curve: "secret" }, "TypeError", "'curve'"],
  ["Sender", { curve: { publicKey: "short", secretKey: KEY } }, "TypeError", "'curve.publicKey'"],
  [
    "Sender",
    { curve: { publicKey: KEY, secretKey: KEY, allow: KEY } },
    "TypeError",
    "'curve.allow'",
  ],

  ["ParanoidPirateQueue", { replace: null }, "TypeError", "options"],
  ["ParanoidPirateQueue", { frontend: undefined }, "TypeError", "'frontend'"],
  ["ParanoidPirateQueue", { backend: "localhost" }, "TypeError", "'backend'"],
  ["ParanoidPirateQueue", { heartbeatInterval: -100 }, "RangeError", "'heartbeatInterval'"],
  ["ParanoidPirateQueue", { window: 2.5 }, "TypeError", "'window'"],
  ["ParanoidPirateQueue", { durability: 1 }, "TypeError", "'durability'"],
  [
    "ParanoidPirateQueue",
    { retryBackoff: { factor: 1000 } },
    "RangeError",
    "'retryBackoff.factor'",
  ],

  ["Worker", { replace: undefined }, "TypeError", "options"],
  ["Worker", { connect: undefined }, "TypeError", "'connect'"],
  ["Worker", { connect: [] }, "TypeError", "'connect'"],
  ["Worker", { connect: "nowhere" }, "TypeError", "'connect'"],
  ["Worker", { connect: [EP, 42] }, "TypeError", "'connect'"],
  ["Worker", { handler: undefined }, "TypeError", "'handler'"],
  ["Worker", { handler: "echo" }, "TypeError", "'handler'"],
  ["Worker", { concurrency: 0 }, "RangeError", "'concurrency'"],
  ["Worker", { concurrency: 2.5 }, "TypeError", "'concurrency'"],
  ["Worker", { prefetch: 0 }, "RangeError", "'prefetch'"],
  ["Worker", { heartbeatInterval: 0 }, "RangeError", "'heartbeatInterval'"],
  ["Worker", { liveness: Infinity }, "TypeError", "'liveness'"],
  ["Worker", { protocol: "zmtp" }, "TypeError", "'protocol'"],
  ["Worker", { closeTimeout: -1 }, "RangeError", "'closeTimeout'"],
  ["Worker", { maxMessageSize: 0 }, "RangeError", "'maxMessageSize'"],
  ["Worker", { maxBatch: 0 }, "RangeError", "'maxBatch'"],
  ["Worker", { codec: 42 }, "TypeError", "'codec'"],
  ["Worker", { codec: { encode: handler } }, "TypeError", "'codec'"],
  ["Worker", { reconnect: { initial: -1 } }, "RangeError", "'reconnect.initial'"],
  ["Worker", { reconnect: { max: 0 } }, "RangeError", "'reconnect.max'"],
  ["Worker", { dedupe: 5 }, "TypeError", "'dedupe'"],
  [
    "Worker",
    { dedupe: { path: "/tmp/unused", maxEntries: 0 } },
    "RangeError",
    "'dedupe.maxEntries'",
  ],
  ["Worker", { curve: { publicKey: KEY, secretKey: KEY } }, "TypeError", "'curve.serverKey'"],

  ["LazyPirateServer", { replace: undefined }, "TypeError", "options"],
  ["LazyPirateServer", { bind: undefined }, "TypeError", "'bind'"],
  ["LazyPirateServer", { bind: [EP, "tcp://127.0.0.1:5556"] }, "TypeError", "'bind'"],
  ["LazyPirateServer", { handler: undefined }, "TypeError", "'handler'"],
  ["LazyPirateServer", { concurrency: 0 }, "RangeError", "'concurrency'"],
  ["LazyPirateServer", { maxMessageSize: 0 }, "RangeError", "'maxMessageSize'"],
  ["LazyPirateServer", { maxQueued: -1 }, "RangeError", "'maxQueued'"],
  ["LazyPirateServer", { closeTimeout: 0 }, "RangeError", "'closeTimeout'"],
  ["LazyPirateServer", { replyCache: "yes" }, "TypeError", "'replyCache'"],
  ["LazyPirateServer", { replyCache: { size: 0 } }, "RangeError", "'replyCache.size'"],
  ["LazyPirateServer", { replyCache: { ttl: 1.5 } }, "TypeError", "'replyCache.ttl'"],
  ["LazyPirateServer", { codec: "json" }, "TypeError", "'codec'"],

  ["LazyPirateClient", { replace: undefined }, "TypeError", "options"],
  ["LazyPirateClient", { connect: undefined }, "TypeError", "'connect'"],
  ["LazyPirateClient", { connect: [] }, "TypeError", "'connect'"],
  ["LazyPirateClient", { timeout: 0 }, "RangeError", "'timeout'"],
  ["LazyPirateClient", { timeout: 2 ** 31 }, "RangeError", "'timeout'"],
  ["LazyPirateClient", { timeout: "2s" }, "TypeError", "'timeout'"],
  ["LazyPirateClient", { retries: 0 }, "RangeError", "'retries'"],
  ["LazyPirateClient", { concurrency: -1 }, "RangeError", "'concurrency'"],
  ["LazyPirateClient", { maxMessageSize: 0 }, "RangeError", "'maxMessageSize'"],
  ["LazyPirateClient", { framed: "yes" }, "TypeError", "'framed'"],
  ["LazyPirateClient", { codec: {} }, "TypeError", "'codec'"],

  ["LevelJournal", { replace: "" }, "TypeError", "'path'"],
  ["LevelJournal", { replace: 42 }, "TypeError", "'path'"],
  ["LevelJournal", { path: "" }, "TypeError", "'path'"],
]

/** Options as JavaScript may pass them, with keys set to `undefined`. */
function js(options: Record<string, unknown>): never {
  return options as never
}

function label(patch: Options | { replace: unknown }): string {
  const shown = "replace" in patch ? patch.replace : patch
  return typeof shown === "function" ? "a function" : (JSON.stringify(shown) ?? String(shown))
}

function optionsOf(role: Role, patch: Options | { replace: unknown }): unknown {
  return "replace" in patch ? patch.replace : { ...role.base, ...patch }
}

describe("wrong options fail at construction, naming the option", () => {
  it.each(
    rows.map(([name, patch, kind, option]) => [name, label(patch), patch, kind, option] as const),
  )("new %s(%s) throws", (name, _label, patch, kind, option) => {
    expectRefusal(
      thrown(() => roles[name].make(optionsOf(roles[name], patch))),
      kind,
      option,
    )
  })

  it("every valid base builds without I/O (no socket, no file, no timer)", () => {
    const before = process.getActiveResourcesInfo().length
    for (const role of Object.values(roles)) role.make(role.base)
    expect(new MemoryJournal()).toBeInstanceOf(MemoryJournal) // takes no options
    expect(process.getActiveResourcesInfo().length).toBe(before)
  })

  it.each([
    ["Sender", { bind: [EP, "tcp://127.0.0.1:5556"] }, "'bind'"],
    ["ParanoidPirateQueue", { frontend: [EP, "tcp://127.0.0.1:5557"] }, "'frontend'"],
  ] as const)("new %s with a list of endpoints to bind throws", (name, patch, option) => {
    expectRefusal(
      thrown(() => roles[name].make(optionsOf(roles[name], patch))),
      "TypeError",
      option,
    )
  })

  it.each([
    ["Sender", { retryBackoff: 1000 }, "'retryBackoff'"],
    ["ParanoidPirateQueue", { retryBackoff: "fast" }, "'retryBackoff'"],
    ["Worker", { reconnect: 500 }, "'reconnect'"],
  ] as const)(
    "new %s with a backoff option that is not an object throws",
    (name, patch, option) => {
      expectRefusal(
        thrown(() => roles[name].make(optionsOf(roles[name], patch))),
        "TypeError",
        option,
      )
    },
  )

  it("new Sender and Worker take options given as undefined as their defaults", async () => {
    // The defaults at work: the msgpack codec (an object round-trips), a window and heartbeats
    // that deliver, and one job at a time at the worker (WORKER_DEFAULTS.concurrency is 1).
    const sender = await Sender.open(
      js({
        bind: "tcp://127.0.0.1:*",
        window: undefined,
        heartbeatInterval: undefined,
        codec: undefined,
      }),
    )
    onTestFinished(() => sender.close())
    let running = 0
    let most = 0
    const worker = await Worker.open(
      js({
        connect: sender.endpoint,
        concurrency: undefined,
        prefetch: undefined,
        reconnect: undefined,
        handler: async (payload: unknown) => {
          most = Math.max(most, ++running)
          await new Promise((r) => setImmediate(r))
          running--
          return payload
        },
      }),
    )
    onTestFinished(() => worker.close())
    const payloads = [1, 2, 3, 4].map((n) => ({ n, list: [n] }))
    await expect(Promise.all(payloads.map((p) => sender.request(p)))).resolves.toEqual(payloads)
    expect(most).toBe(WORKER_DEFAULTS.concurrency)
  })

  it("new ParanoidPirateQueue takes options given as undefined as their defaults", async () => {
    // With a liveness or a heartbeat that is not a number, the worker expires at once (or never
    // becomes ready) and the request is never answered.
    const queue = await ParanoidPirateQueue.open(
      js({
        frontend: "tcp://127.0.0.1:*",
        backend: "tcp://127.0.0.1:*",
        liveness: undefined,
        maxAttempts: undefined,
      }),
    )
    onTestFinished(() => queue.close())
    const worker = await Worker.open({ connect: queue.backendEndpoint, handler })
    onTestFinished(() => worker.close())
    const client = new LazyPirateClient({ connect: queue.frontendEndpoint, timeout: 5000 })
    onTestFinished(() => client.close())
    await expect(client.request({ via: "queue" })).resolves.toEqual({ via: "queue" })
  })

  it("new LazyPirateServer takes options given as undefined as their defaults", async () => {
    const release = gate()
    onTestFinished(release.open)
    const server = await LazyPirateServer.open(
      js({
        bind: "tcp://127.0.0.1:*",
        concurrency: undefined,
        replyCache: undefined,
        codec: undefined,
        handler: () => release.promise,
      }),
    )
    onTestFinished(() => server.close())
    const { concurrency } = LAZY_PIRATE_SERVER_DEFAULTS
    const client = new LazyPirateClient({
      connect: server.endpoint,
      concurrency: concurrency + 1,
      timeout: 5000,
    })
    onTestFinished(() => client.close())
    // Settled either way, so that a failure here leaves no unhandled rejection to the next test.
    const replies = Array.from({ length: concurrency + 1 }, () =>
      client.request(null).then(
        () => "answered",
        (err: unknown) => err,
      ),
    )
    await waitFor(() => expect(server.stats()).toMatchObject({ running: concurrency, queued: 1 }))
    release.open()
    expect(await Promise.all(replies)).toEqual(Array(concurrency + 1).fill("answered"))
  })

  it("new LazyPirateClient takes options given as undefined as their defaults", async () => {
    const client = new LazyPirateClient(
      js({ connect: await deadEndpoint(), timeout: 30, retries: undefined, framed: undefined }),
    )
    onTestFinished(() => client.close())
    await expect(client.request("anyone?")).rejects.toMatchObject({
      code: "PIRATE_TIMEOUT",
      tries: LAZY_PIRATE_CLIENT_DEFAULTS.retries,
    })
    // The default timeout (2500 ms) outlasts the abort; one that is not a number fires at once.
    const slow = new LazyPirateClient(js({ connect: await deadEndpoint(), timeout: undefined }))
    onTestFinished(() => slow.close())
    const pending = slow.request("x", { retries: 1, signal: AbortSignal.timeout(50) })
    await expect(pending).rejects.toMatchObject({ code: "PIRATE_ABORTED" })
  })

  it("new Sender({ journal: '' }) names 'journal'", () => {
    expectRefusal(
      thrown(() => roles.Sender.make({ bind: EP, journal: "" })),
      "TypeError",
      "'journal'",
    )
  })
})

describe("wrong options of a call fail at the call, naming the option", () => {
  it("LazyPirateClient.request", async () => {
    const client = new LazyPirateClient({ connect: EP })
    onTestFinished(() => client.close())
    expectRefusal(
      thrown(() => client.request(1, { timeout: 0 })),
      "RangeError",
      "'timeout'",
    )
    expectRefusal(
      thrown(() => client.request(1, { retries: 1.5 })),
      "TypeError",
      "'retries'",
    )
    expectRefusal(
      thrown(() => client.request(1, { signal: {} as AbortSignal })),
      "TypeError",
      "'signal'",
    )
    expectRefusal(
      thrown(() => client.request(1, null as never)),
      "TypeError",
      "'options'",
    )
    await client.close()
  })

  it("Sender.request", async () => {
    const sender = await Sender.open({ bind: "tcp://127.0.0.1:*" })
    onTestFinished(() => sender.close())
    await expect(sender.request(1, { timeout: 0 })).rejects.toThrow(RangeError)
    await expect(sender.request(1, { timeout: 0 })).rejects.toThrow(/'timeout'/)
  })
})

/** Values that are never a valid count or duration. */
const notANumber = fc.constantFrom<unknown>(Number.NaN, "1", true, {}, [], () => 1)
const nonInteger = fc.double({ noInteger: true, noNaN: true })
const badPositive = fc.oneof(
  fc.integer({ max: 0 }),
  nonInteger,
  notANumber,
  fc.constantFrom(Infinity, -Infinity),
)
const badNonNegative = fc.oneof(
  fc.integer({ max: -1 }),
  nonInteger,
  notANumber,
  fc.constantFrom(Infinity),
)

/** Numeric options by role: [path, kind]; a dotted path is a nested option. */
const numeric: Record<Exclude<RoleName, "LevelJournal">, [string, "positive" | "nonNegative"][]> = {
  Sender: [
    ["heartbeatInterval", "positive"],
    ["liveness", "positive"],
    ["maxAttempts", "positive"],
    ["window", "positive"],
    ["maxBatch", "positive"],
    ["maxMessageSize", "positive"],
    ["sendTimeout", "positive"],
    ["ackTimeout", "nonNegative"],
    ["retryBackoff.initial", "nonNegative"],
    ["retryBackoff.max", "positive"],
  ],
  ParanoidPirateQueue: [
    ["heartbeatInterval", "positive"],
    ["liveness", "positive"],
    ["window", "positive"],
    ["ackTimeout", "nonNegative"],
  ],
  Worker: [
    ["concurrency", "positive"],
    ["prefetch", "positive"],
    ["heartbeatInterval", "positive"],
    ["liveness", "positive"],
    ["maxMessageSize", "positive"],
    ["maxBatch", "positive"],
    ["closeTimeout", "nonNegative"],
    ["reconnect.initial", "nonNegative"],
    ["reconnect.max", "positive"],
  ],
  LazyPirateServer: [
    ["concurrency", "positive"],
    ["maxMessageSize", "positive"],
    ["closeTimeout", "positive"],
    ["replyCache.size", "positive"],
    ["replyCache.ttl", "positive"],
  ],
  LazyPirateClient: [
    ["timeout", "positive"],
    ["retries", "positive"],
    ["concurrency", "positive"],
    ["maxMessageSize", "positive"],
  ],
}

const numericCase = fc.oneof(
  ...Object.entries(numeric).flatMap(([name, list]) =>
    list.map(([path, kind]) =>
      fc.record({
        name: fc.constant(name as Exclude<RoleName, "LevelJournal">),
        path: fc.constant(path),
        value: kind === "positive" ? badPositive : badNonNegative,
      }),
    ),
  ),
)

it("property: any bad count or duration, for any role, is refused naming the option", () => {
  fc.assert(
    fc.property(numericCase, ({ name, path, value }) => {
      const role: Role = roles[name]
      const [head, leaf] = path.split(".") as [string, string | undefined]
      const patch = leaf === undefined ? { [head]: value } : { [head]: { [leaf]: value } }
      expectRefusal(
        thrown(() => role.make(optionsOf(role, patch))),
        "either",
        `'${path}'`,
      )
    }),
    { numRuns: 300 },
  )
})
