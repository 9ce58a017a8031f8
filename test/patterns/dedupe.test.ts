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
import { Worker } from "../../patterns/index.js"
import { forkFixture } from "../helpers/processes.js"

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-dedupe-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A raw ROUTER that plays a PPX sender, so the test decides exactly what is redelivered. */
async function fakeSender(): Promise<{
  endpoint: string
  waitForWorker(): Promise<Buffer>
  deliver(worker: Buffer, id: string, attempt: number, payload: unknown): Promise<unknown>
}> {
  const router = new Router({ linger: 0 })
  onTestFinished(() => router.close())
  await router.bind("tcp://127.0.0.1:*")
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
        ...encodeWelcome({ version: 1, heartbeatInterval: 100, liveness: 3 }),
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
