import { once } from "node:events"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { Router } from "zeromq"
import { msgpackCodec } from "../../lib/codec.js"
import {
  PPX,
  decodeEnvelope,
  encodeEnvelope,
  encodeWelcome,
  packBodies,
  packEnvelopes,
  unpackBodies,
  unpackEnvelopes,
} from "../../lib/protocol.js"
import { bindRetrying } from "../../lib/writer.js"
import { Worker } from "../../patterns/index.js"

import { forkFixture } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-dedupe-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A raw ROUTER that plays a PPX sender, so the test decides exactly what is redelivered. It
 * announces `sender` as its identity in WELCOME (none by default) and binds `bind`.
 */
async function fakeSender(options: { sender?: string; bind?: string } = {}): Promise<{
  endpoint: string
  waitForWorker(): Promise<Buffer>
  deliver(worker: Buffer, id: string, attempt: number, payload: unknown): Promise<unknown>
  close(): void
}> {
  const router = new Router({ linger: 0 })
  onTestFinished(() => router.close())
  await bindRetrying(router, options.bind ?? "tcp://127.0.0.1:*", "bind")
  const next = async (match: (msg: Buffer[]) => boolean): Promise<Buffer[]> => {
    for (let i = 0; i < 1000; i++) {
      const msg = await router.receive()
      if (match(msg)) return msg
    }
    throw new Error("no matching message in 1000")
  }
  return {
    endpoint: router.lastEndpoint!,
    async waitForWorker() {
      const [id] = await next((m) => m[1]?.[0] === 0x01)
      await router.send([
        id!,
        ...encodeWelcome({
          version: 1,
          heartbeatInterval: 100,
          liveness: 3,
          sender: options.sender,
        }),
      ])
      return id!
    },
    async deliver(worker, id, attempt, payload) {
      await router.send([
        worker,
        Buffer.from([PPX.TASKS]),
        packEnvelopes([encodeEnvelope(id, attempt)]),
        packBodies([msgpackCodec.encode(payload)]),
      ])
      // ACKS: [routing id, 0x12, envelopes, replies]
      const isAcks = (m: Buffer[]): boolean => m.length === 4 && m[1]?.[0] === PPX.ACKS
      const envelopesOf = (m: Buffer[]): Buffer[] =>
        isAcks(m) ? (unpackEnvelopes(m[2]) ?? []) : []
      const indexOf = (m: Buffer[]): number =>
        envelopesOf(m).findIndex((e) => decodeEnvelope(e)?.id === id)
      const ack = await next((m) => indexOf(m) >= 0)
      const envelopes = envelopesOf(ack)
      const i = indexOf(ack)
      expect(decodeEnvelope(envelopes[i])).toEqual({ id, attempt })
      const replies = unpackBodies(ack[3], envelopes.length)
      expect(replies, "the ACKS holds one reply per envelope").not.toBeNull()
      return msgpackCodec.decode(replies![i]!)
    },
    close: () => router.close(),
  }
}

describe("Worker dedupe (effectively once)", () => {
  it("acks a redelivery of a completed message with the recorded reply, without running the handler", async () => {
    const dir = await tempDir()
    const sender = await fakeSender()
    const runs: unknown[] = []
    const worker = await Worker.open({
      connect: sender.endpoint,
      dedupe: dir,
      heartbeatInterval: 100,
      handler: (p) => {
        runs.push(p)
        return { doubled: (p as number) * 2, run: runs.length }
      },
    })
    onTestFinished(() => worker.close())
    const w = await sender.waitForWorker()
    expect(await sender.deliver(w, "00000000000000a1", 1, 21)).toEqual({ doubled: 42, run: 1 })
    expect(await sender.deliver(w, "00000000000000a1", 2, 21)).toEqual({ doubled: 42, run: 1 })
    expect(await sender.deliver(w, "00000000000000b2", 1, 5)).toEqual({ doubled: 10, run: 2 })
    expect(runs).toEqual([21, 5])
    expect(worker.stats()).toMatchObject({ deduplicated: 1, acked: 3 })
  })

  it("remembers completions across a SIGKILL of the worker", async () => {
    const dir = await tempDir()
    const sender = await fakeSender()
    const first = forkFixture("pp-dedupe-worker.ts", [sender.endpoint, dir])
    let w = await sender.waitForWorker()
    expect(await sender.deliver(w, "00000000000000c3", 1, 4)).toEqual({ doubled: 8 })
    await first.kill("SIGKILL")

    const second = forkFixture("pp-dedupe-worker.ts", [sender.endpoint, dir])
    w = await sender.waitForWorker()
    expect(await sender.deliver(w, "00000000000000c3", 2, 4)).toEqual({ doubled: 8 })
    expect(second.messages.filter((m) => m["type"] === "run")).toEqual([])
    expect(await sender.deliver(w, "00000000000000d4", 1, 7)).toEqual({ doubled: 14 })
    expect(second.messages.filter((m) => m["type"] === "run")).toEqual([
      { type: "run", payload: 7 },
    ])
  })

  it("keys completions on the sender's identity: another spelling of its address finds them", async () => {
    const dir = await tempDir()
    const sender = await fakeSender({ sender: "5e4de7000000000000000000000000a1" })
    const port = new URL(sender.endpoint).port
    const runs: unknown[] = []
    const handler = (p: unknown): unknown => {
      runs.push(p)
      return { doubled: (p as number) * 2 }
    }
    const first = await Worker.open({ connect: `tcp://127.0.0.1:${port}`, dedupe: dir, handler })
    let w = await sender.waitForWorker()
    expect(await sender.deliver(w, "00000000000000f1", 1, 4)).toEqual({ doubled: 8 })
    await first.close()

    // The same worker and store, restarted with the sender's address spelled another way.
    const second = await Worker.open({ connect: `tcp://localhost:${port}`, dedupe: dir, handler })
    onTestFinished(() => second.close())
    w = await sender.waitForWorker()
    expect(await sender.deliver(w, "00000000000000f1", 2, 4)).toEqual({ doubled: 8 })
    expect(runs).toEqual([4])
    expect(second.stats()).toMatchObject({ deduplicated: 1 })
  })

  it("never answers one sender's message with another sender's record of the same id", async () => {
    const dir = await tempDir()
    const a = await fakeSender({ sender: "5e4de7000000000000000000000000aa" })
    const runs: unknown[] = []
    const worker = await Worker.open({
      connect: a.endpoint,
      dedupe: dir,
      heartbeatInterval: 100,
      reconnect: { initial: 20, max: 100 },
      handler: (p) => {
        runs.push(p)
        return { doubled: (p as number) * 2 }
      },
    })
    onTestFinished(() => worker.close())
    expect(await a.deliver(await a.waitForWorker(), "00000000000000f2", 1, 3)).toEqual({
      doubled: 6,
    })
    // Another sender takes over the address and, by chance, has a message with the same id.
    a.close()
    const b = await fakeSender({ sender: "5e4de7000000000000000000000000bb", bind: a.endpoint })
    expect(await b.deliver(await b.waitForWorker(), "00000000000000f2", 1, 5)).toEqual({
      doubled: 10,
    })
    expect(runs).toEqual([3, 5])
    expect(worker.stats()).toMatchObject({ deduplicated: 0 })
  })

  it("keys on the identity a Sender keeps in its journal: after a SIGKILL and restart, through another address, nothing runs twice", async () => {
    const dir = await tempDir()
    const journal = await tempDir()
    const first = forkFixture("pp-sender.ts", ["tcp://127.0.0.1:*", journal, '{"count":1}'])
    const { endpoint } = (await first.waitFor((m) => m["type"] === "open")) as { endpoint: string }
    const port = new URL(endpoint).port
    let runs = 0
    let release = (): void => undefined
    const released = new Promise<void>((resolve) => (release = resolve))
    let started = (): void => undefined
    const running = new Promise<void>((resolve) => (started = resolve))
    const worker = await Worker.open({
      connect: `tcp://127.0.0.1:${port}`,
      dedupe: dir,
      heartbeatInterval: 100,
      handler: async (p) => {
        runs++
        started()
        await released
        return p
      },
    })
    onTestFinished(() => worker.close())
    await running
    // The sender dies before the ack: its restart redelivers the message.
    const lost = once(worker, "sender:lost", { signal: AbortSignal.timeout(5000) })
    await first.kill("SIGKILL")
    await lost
    release()
    await waitFor(() => expect(worker.stats().discarded, "the run to finish").toBe(1))
    await worker.close()

    const second = forkFixture("pp-sender.ts", [endpoint, journal, "{}"])
    await second.waitFor((m) => m["type"] === "open")
    const again = await Worker.open({
      connect: `tcp://localhost:${port}`,
      dedupe: dir,
      heartbeatInterval: 100,
      handler: (p) => {
        runs++
        return p
      },
    })
    onTestFinished(() => again.close())
    await waitFor(() => expect(again.stats().acked, "the redelivery to be acked").toBe(1))
    expect(again.stats()).toMatchObject({ deduplicated: 1 })
    expect(runs).toBe(1)
  })

  it("forgets the oldest completions beyond maxEntries", async () => {
    const dir = await tempDir()
    const sender = await fakeSender()
    let runs = 0
    const worker = await Worker.open({
      connect: sender.endpoint,
      dedupe: { path: dir, maxEntries: 2 },
      heartbeatInterval: 100,
      handler: () => ++runs,
    })
    onTestFinished(() => worker.close())
    const w = await sender.waitForWorker()
    for (const id of ["00000000000000e1", "00000000000000e2", "00000000000000e3"])
      await sender.deliver(w, id, 1, 0)
    await expect.poll(() => runs).toBe(3)
    // e1 was forgotten (oldest beyond 2): it runs again; e3 is remembered.
    await sender.deliver(w, "00000000000000e3", 2, 0)
    expect(runs).toBe(3)
    await expect
      .poll(async () => {
        await sender.deliver(w, "00000000000000e1", 2, 0)
        return runs
      })
      .toBe(4)
  })

  it("refuses a dedupe store held by another worker, and wrong options", async () => {
    const dir = await tempDir()
    const a = await Worker.open({ connect: "tcp://127.0.0.1:1", dedupe: dir, handler: () => 1 })
    onTestFinished(() => a.close())
    await expect(
      Worker.open({ connect: "tcp://127.0.0.1:1", dedupe: dir, handler: () => 1 }),
    ).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_LOCKED",
    })
    expect(
      () =>
        new Worker({
          connect: "tcp://127.0.0.1:1",
          dedupe: { path: dir, maxEntries: 0 },
          handler: () => 1,
        }),
    ).toThrow(/dedupe.maxEntries/)
  })
})
