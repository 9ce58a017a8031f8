/**
 * Unknown options are refused with a TypeError that suggests the closest known name: a typo
 * would otherwise leave the default in force without a word.
 */
import { describe, expect, it } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { DedupeStore } from "../../lib/journal/dedupe.js"
import { generateKeyPair } from "../../lib/security.js"
import { assertKnownOptions, closest, levenshtein } from "../../lib/validate.js"
import {
  LazyPirateClient,
  LazyPirateServer,
  ParanoidPirateQueue,
  Sender,
  Worker,
} from "../../patterns/index.js"

const ep = "tcp://127.0.0.1:5555"
const handler = (): null => null

/** Calls `make` with a typo'd option on purpose (cast past the types, as a JS caller would). */
function refused(make: () => unknown): TypeError {
  try {
    make()
  } catch (err) {
    expect(err).toBeInstanceOf(TypeError)
    return err as TypeError
  }
  throw new Error("the unknown option was accepted")
}

describe("levenshtein and closest", () => {
  it("counts insertions, deletions and substitutions", () => {
    expect(levenshtein("", "")).toBe(0)
    expect(levenshtein("abc", "abc")).toBe(0)
    expect(levenshtein("maxattemps", "maxattempts")).toBe(1)
    expect(levenshtein("kitten", "sitting")).toBe(3)
    expect(levenshtein("", "abc")).toBe(3)
  })

  it("suggests a likely typo only", () => {
    const names = ["maxAttempts", "maxBatch", "liveness", "window"]
    expect(closest("maxAttemps", names)).toBe("maxAttempts")
    expect(closest("MaxAttempts", names)).toBe("maxAttempts") // case does not count
    expect(closest("livenes", names)).toBe("liveness")
    expect(closest("windw", names)).toBe("window")
    expect(closest("colour", names)).toBeUndefined()
  })

  it("lists the options when nothing is close", () => {
    expect(() => assertKnownOptions("thing", { zzz: 1 }, { alpha: true, beta: true })).toThrow(
      "'zzz' is not an option of thing; the options are 'alpha', 'beta'",
    )
    expect(() => assertKnownOptions("thing", { alpha: 1 }, { alpha: true })).not.toThrow()
  })
})

describe("every role refuses an unknown option, naming the closest known one", () => {
  const cases: [string, () => unknown, string, string][] = [
    ["Sender", () => new Sender({ bind: ep, maxAttemps: 3 } as never), "maxAttemps", "maxAttempts"],
    ["Sender (codec)", () => new Sender({ bind: ep, codek: "raw" } as never), "codek", "codec"],
    [
      "Worker",
      () => new Worker({ connect: ep, handler, concurency: 2 } as never),
      "concurency",
      "concurrency",
    ],
    [
      "ParanoidPirateQueue",
      () => new ParanoidPirateQueue({ frontend: ep, backend: ep, frontEnd2: ep } as never),
      "frontEnd2",
      "frontend",
    ],
    [
      "ParanoidPirateQueue (core option)",
      () => new ParanoidPirateQueue({ frontend: ep, backend: ep, heartbeatIntrval: 5 } as never),
      "heartbeatIntrval",
      "heartbeatInterval",
    ],
    [
      "LazyPirateClient",
      () => new LazyPirateClient({ connect: ep, retires: 3 } as never),
      "retires",
      "retries",
    ],
    [
      "LazyPirateServer",
      () => new LazyPirateServer({ bind: ep, handler, maxQueue: 3 } as never),
      "maxQueue",
      "maxQueued",
    ],
    [
      "LazyPirateServer replyCache",
      () => new LazyPirateServer({ bind: ep, handler, replyCache: { tll: 5 } } as never),
      "tll",
      "ttl",
    ],
    [
      "LevelJournal",
      () => new LevelJournal({ path: "/tmp/x", minBatc: 4 } as never),
      "minBatc",
      "minBatch",
    ],
    [
      "DedupeStore",
      () => new DedupeStore({ path: "/tmp/x", maxEntires: 4 } as never),
      "maxEntires",
      "maxEntries",
    ],
    [
      "Worker dedupe",
      () => new Worker({ connect: ep, handler, dedupe: { path: "/tmp/x", maxAg: 1 } } as never),
      "maxAg",
      "maxAge",
    ],
    [
      "Sender retryBackoff",
      () => new Sender({ bind: ep, retryBackoff: { intial: 5 } } as never),
      "intial",
      "initial",
    ],
    [
      "Worker reconnect",
      () => new Worker({ connect: ep, handler, reconnect: { jiter: 0 } } as never),
      "jiter",
      "jitter",
    ],
    [
      "Sender curve (a typo of `allow` must not silently allow everyone)",
      () => new Sender({ bind: ep, curve: { ...generateKeyPair(), alow: [] } } as never),
      "alow",
      "allow",
    ],
    [
      "Worker curve",
      () =>
        new Worker({
          connect: ep,
          handler,
          curve: { ...generateKeyPair(), serverkey: generateKeyPair().publicKey },
        } as never),
      "serverkey",
      "serverKey",
    ],
  ]
  for (const [role, make, typo, known] of cases) {
    it(role, () => {
      const err = refused(make)
      expect(err.message).toContain(`'${typo}' is not an option of`)
      expect(err.message).toContain(`did you mean '${known}'?`)
    })
  }

  it("the known options themselves all pass", () => {
    expect(
      () =>
        new Sender({
          bind: ep,
          codec: "msgpack",
          durability: "memory",
          heartbeatInterval: 1000,
          liveness: 3,
          maxAttempts: 5,
          retryBackoff: { initial: 1, max: 2, factor: 2, jitter: 0 },
          ackTimeout: 0,
          window: 10,
          windowBytes: 1024,
          maxBacklog: Infinity,
          maxBacklogBytes: Infinity,
          maxBatch: 4,
          maxMessageSize: 1024,
          sendTimeout: 100,
          random: Math.random,
        }),
    ).not.toThrow()
    expect(() => new LevelJournal({ path: "/tmp/x", minBatch: 4 })).not.toThrow()
  })
})

describe("per-call options", () => {
  it("Sender.send() and request() refuse an unknown option", async () => {
    const sender = new Sender({ bind: ep })
    await expect(sender.send("x", { signl: undefined } as never)).rejects.toThrow(
      /'signl' is not an option of send\(\); did you mean 'signal'\?/,
    )
    await expect(sender.request("x", { timout: 5 } as never)).rejects.toThrow(
      /'timout' is not an option of request\(\); did you mean 'timeout'\?/,
    )
  })

  it("LazyPirateClient.request() refuses an unknown option", () => {
    const client = new LazyPirateClient({ connect: ep })
    expect(() => client.request("x", { retrys: 2 } as never)).toThrow(
      /'retrys' is not an option of request\(\); did you mean 'retries'\?/,
    )
  })
})
