/**
 * One lifecycle for every role and store (lib/lifecycle.ts): "new" first, a failed open may be
 * retried, open()/close() idempotent, open() after close() refused, a static open().
 */
import { mkdir, mkdtemp, rm, rmdir, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { Lifecycle } from "../../lib/lifecycle.js"
import { DedupeStore } from "../../lib/journal/dedupe.js"
import { LevelJournal } from "../../lib/journal/level.js"
import {
  LazyPirateClient,
  LazyPirateServer,
  ParanoidPirateQueue,
  Sender,
  Worker,
} from "../../patterns/index.js"

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-life-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

describe("Lifecycle", () => {
  it("opens once, however often open() is called; close() waits for the open", async () => {
    const life = new Lifecycle("the thing")
    expect(life.status).toBe("new")
    let opens = 0
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const run = async (): Promise<void> => {
      opens++
      await gate
    }
    const a = life.open(run)
    expect(life.open(run)).toBe(a)
    expect(life.status).toBe("opening")
    const closing = life.close(() => Promise.resolve())
    expect(life.closeRequested).toBe(true)
    release()
    await a
    await closing
    expect(opens).toBe(1)
    expect(life.status).toBe("closed")
    await expect(life.open(run)).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    expect(() => life.assertOpen()).toThrow(expect.objectContaining({ code: "PIRATE_CLOSED" }))
  })

  it('a failed open leaves it "new", and the next open() runs again', async () => {
    const life = new Lifecycle("the thing")
    const failure = new Error("port in use")
    await expect(life.open(() => Promise.reject(failure))).rejects.toBe(failure)
    expect(life.status).toBe("new")
    await expect(life.ready()).rejects.toMatchObject({ code: "PIRATE_NOT_OPEN" })
    await life.open(() => Promise.resolve())
    expect(life.status).toBe("open")
    await expect(life.ready()).resolves.toBeUndefined()
  })

  it("a failure thrown synchronously by the open is retried too", async () => {
    const life = new Lifecycle("the thing")
    const run = (): Promise<void> => {
      throw new Error("at once")
    }
    await expect(life.open(run)).rejects.toThrow("at once")
    await expect(life.open(() => Promise.resolve())).resolves.toBeUndefined()
  })
})

describe('every role and store starts "new", without I/O', () => {
  it("status is new before open()", async () => {
    const dir = join(await tempDir(), "never-created")
    const ep = "tcp://127.0.0.1:5555"
    const handler = (): null => null
    const all = [
      new LazyPirateClient({ connect: ep }),
      new LazyPirateServer({ bind: ep, handler }),
      new Sender({ bind: ep, journal: dir }),
      new Worker({ connect: ep, handler }),
      new ParanoidPirateQueue({ frontend: ep, backend: ep }),
      new LevelJournal(dir),
      new DedupeStore(dir),
    ]
    expect(all.map((x) => x.status)).toEqual(all.map(() => "new"))
    for (const x of all) await x.close()
    expect(all.map((x) => x.status)).toEqual(all.map(() => "closed"))
    await Promise.all(
      all.map((x) => expect(x.open()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })),
    )
  })

  it("LevelJournal.open() and DedupeStore.open() create and open in one step", async () => {
    const journal = await LevelJournal.open({ path: join(await tempDir(), "j") })
    onTestFinished(() => journal.close())
    expect(journal.status).toBe("open")
    const store = await DedupeStore.open({ path: join(await tempDir(), "d"), maxEntries: 10 })
    onTestFinished(() => store.close())
    expect(store.status).toBe("open")
    await store.put("k", Buffer.from("reply"))
    expect(await store.get("k")).toEqual(Buffer.from("reply"))
  })
})

describe("DedupeStore classifies open failures as the journal does", () => {
  it("an I/O failure is PIRATE_JOURNAL_IO, not CORRUPT; the open may be retried", async () => {
    const dir = await tempDir()
    await mkdir(join(dir, "LOCK")) // LevelDB cannot create its lock file: "IO error: … Is a directory"
    const store = new DedupeStore(dir)
    onTestFinished(() => store.close())
    await expect(store.open()).rejects.toMatchObject({
      name: "PirateError",
      code: "PIRATE_JOURNAL_IO",
      message: expect.stringContaining(`cannot open the dedupe store in ${dir}`) as unknown,
    })
    expect(store.status).toBe("new")
    await rmdir(join(dir, "LOCK"))
    await store.open()
    expect(store.status).toBe("open")
  })

  it("a directory held by another store is PIRATE_JOURNAL_LOCKED", async () => {
    const dir = await tempDir()
    const first = await DedupeStore.open(dir)
    onTestFinished(() => first.close())
    await expect(DedupeStore.open(dir)).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_LOCKED",
      cause: expect.objectContaining({ code: "LEVEL_LOCKED" }) as unknown,
    })
  })

  it("a path that cannot be a directory is PIRATE_JOURNAL_IO", async () => {
    const dir = await tempDir()
    await writeFile(join(dir, "file"), "")
    await expect(DedupeStore.open(join(dir, "file", "store"))).rejects.toMatchObject({
      name: "PirateError",
      code: "PIRATE_JOURNAL_IO",
    })
  })
})
