/**
 * A journaled ParanoidPirateQueue killed with SIGKILL and restarted on the same journal: the
 * requests it had taken are recovered with their Lazy Pirate request ids, so a client's retry is
 * answered by the recovered copy and the handler runs once.
 */
import { once } from "node:events"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { Request } from "zeromq"
import { msgpackCodec } from "../../lib/codec.js"
import { LPX_OK, decodeReplyStatus, encodeRequestHeader } from "../../lib/protocol.js"
import { LazyPirateClient, Worker, type WorkerOptions } from "../../patterns/index.js"

import { forkFixture, type Child } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-queue-restart-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

interface Endpoints {
  frontend: string
  backend: string
}

/** Starts the queue fixture on `journal`; binds free ports, or `at` (a restart). */
async function startQueue(journal: string, at?: Endpoints): Promise<{ q: Child } & Endpoints> {
  const q = forkFixture("pp-queue.ts", [
    at?.frontend ?? "tcp://127.0.0.1:*",
    at?.backend ?? "tcp://127.0.0.1:*",
    journal,
  ])
  const open = (await q.waitFor((m) => m["type"] === "open")) as unknown as Endpoints
  return { q, frontend: open.frontend, backend: open.backend }
}

/** The queue's stats, asked over IPC. */
async function statsOf(q: Child): Promise<Record<string, number>> {
  const from = q.messages.length
  q.process.send({ type: "stats" })
  const m = await q.waitFor((m) => m["type"] === "stats" && q.messages.indexOf(m) >= from)
  return m["stats"] as Record<string, number>
}

async function openWorker(
  backend: string,
  options: Partial<WorkerOptions> & Pick<WorkerOptions, "handler">,
): Promise<Worker> {
  const worker = await Worker.open({
    connect: backend,
    heartbeatInterval: 100,
    reconnect: { initial: 50, max: 200 },
    ...options,
  })
  onTestFinished(() => worker.close())
  return worker
}

// Each test starts two queue processes (tsx and LevelDB take a second or more each under load).
describe("ParanoidPirateQueue restarted on its journal", { timeout: 30_000 }, () => {
  it("joins a client's retry to the recovered request after a SIGKILL: answered, handler run once", async () => {
    const journal = await tempDir()
    const first = await startQueue(journal)
    const client = new LazyPirateClient({ connect: first.frontend, timeout: 200, retries: 100 })
    onTestFinished(() => client.close())
    const reply = client.request({ n: 7 })
    reply.catch(() => undefined) // awaited below
    await first.q.waitFor((m) => m["type"] === "journaled")
    await first.q.kill("SIGKILL")

    const second = await startQueue(journal, first)
    // The client's retry reaches the restarted queue before any worker is there.
    await waitFor(async () => expect((await statsOf(second.q))["joined"]).toBeGreaterThan(0), {
      timeout: 10_000,
    })
    let runs = 0
    await openWorker(second.backend, {
      handler: (p) => {
        runs++
        return { doubled: (p as { n: number }).n * 2 }
      },
    })
    expect(await reply).toEqual({ doubled: 14 })
    expect(runs).toBe(1)
  })

  it("keeps the reply of a recovered request for a retry that comes after it", async () => {
    const journal = await tempDir()
    const first = await startQueue(journal)
    const header = encodeRequestHeader("restart-test.1")
    const body = msgpackCodec.encode({ n: 5 })
    const firstTry = new Request({ linger: 0 })
    onTestFinished(() => firstTry.close())
    firstTry.connect(first.frontend)
    await firstTry.send([header, body])
    await first.q.waitFor((m) => m["type"] === "journaled")
    await first.q.kill("SIGKILL")
    firstTry.close() // a Lazy Pirate client gives up on a socket that timed out

    const second = await startQueue(journal, first)
    let runs = 0
    const worker = await openWorker(second.backend, {
      handler: (p) => {
        runs++
        return { doubled: (p as { n: number }).n * 2 }
      },
    })
    await waitFor(() => expect(worker.stats().acked, "the recovered request to be done").toBe(1), {
      timeout: 10_000,
    })
    const retry = new Request({ linger: 0, receiveTimeout: 10_000 })
    onTestFinished(() => retry.close())
    retry.connect(second.frontend)
    await retry.send([header, body])
    const [status, answer] = await retry.receive()
    expect(decodeReplyStatus(status)).toBe(LPX_OK)
    expect(msgpackCodec.decode(answer as Buffer)).toEqual({ doubled: 10 })
    expect(runs).toBe(1)
  })

  it("with the worker's dedupe, runs a request once when the queue was killed while it ran", async () => {
    const journal = await tempDir()
    const dedupe = await tempDir()
    const first = await startQueue(journal)
    let runs = 0
    let started = (): void => undefined
    const running = new Promise<void>((resolve) => (started = resolve))
    let release = (): void => undefined
    const released = new Promise<void>((resolve) => (release = resolve))
    const worker = await openWorker(first.backend, {
      dedupe,
      handler: async (p) => {
        runs++
        started()
        await released
        return { doubled: (p as { n: number }).n * 2 }
      },
    })
    const client = new LazyPirateClient({ connect: first.frontend, timeout: 200, retries: 100 })
    onTestFinished(() => client.close())
    const reply = client.request({ n: 4 })
    reply.catch(() => undefined) // awaited below
    await running
    const lost = once(worker, "sender:lost", { signal: AbortSignal.timeout(5000) })
    await first.q.kill("SIGKILL")
    await lost
    release() // the run completes (and is recorded) while the queue is down
    await waitFor(() => expect(worker.stats().discarded, "the run to finish").toBe(1), {
      timeout: 10_000,
    })

    await startQueue(journal, first)
    expect(await reply).toEqual({ doubled: 8 })
    expect(runs).toBe(1)
    expect(worker.stats()).toMatchObject({ deduplicated: 1 })
  })
})
