/**
 * Interop with a PPX/1 worker written in Python from docs/protocol.md alone
 * (test/fixtures/ppx_worker.py, python3-zmq and python3-msgpack): the extended READY and the
 * WELCOME, packed TASKS and ACKS, NACK with reject, heartbeats and GOODBYE, against our real
 * Sender. Payloads are Buffers (`codec: "raw"`): the Python worker replies "py:" + the body.
 */
import { once } from "node:events"
import { describe, expect, it, onTestFinished } from "vitest"
import { Sender, Worker, type SenderOptions } from "../../patterns/index.js"
import { pythonMissing, requirePrereq } from "../helpers/prereq.js"
import { spawnPython, type Spawned } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

/** Heartbeats of every peer in this file: 100 ms, 3 missed = dead. */
const python = requirePrereq("PPX/1 interop with Python", pythonMissing("zmq", "msgpack"))
const FAST = { heartbeatInterval: 100, liveness: 3 } as const

interface Task {
  id: string
  attempt: number
  body: string
  size: number
}

async function openSender(options: Partial<SenderOptions> = {}): Promise<Sender> {
  const sender = await Sender.open({ bind: "tcp://127.0.0.1:*", codec: "raw", ...FAST, ...options })
  onTestFinished(() => sender.close())
  return sender
}

function ppxWorker(endpoint: string, ...args: string[]): Spawned {
  return spawnPython("ppx_worker.py", [
    endpoint,
    "--interval",
    "100",
    "--liveness",
    "3",
    "--reconnect-initial",
    "100",
    ...args,
  ])
}

/** Every payload of `event` emitted from now on. */
function collect<T>(emitter: NodeJS.EventEmitter, event: string): T[] {
  const seen: T[] = []
  emitter.on(event, (payload: T) => seen.push(payload))
  return seen
}

const ofType = (events: Record<string, unknown>[], type: string) =>
  events.filter((e) => e["event"] === type)

/** Every task the Python worker took, in the order of its TASKS. */
const tasksOf = (w: Spawned): Task[] =>
  ofType(w.events, "tasks").flatMap((e) => e["tasks"] as Task[])

/** The number of messages in each of its TASKS (or ACKS). */
const sizes = (w: Spawned, type: "tasks" | "acks"): number[] =>
  ofType(w.events, type).map((e) => e["n"] as number)

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)

async function sendAll(sender: Sender, bodies: string[]): Promise<string[]> {
  return Promise.all(bodies.map((b) => sender.send(Buffer.from(b))))
}

describe.runIf(python)(
  "our Sender with a Python PPX/1 worker written from docs/protocol.md",
  () => {
    it("negotiates PPX/1 and acks 300 messages, taken in packed TASKS and answered in packed ACKS", async () => {
      const sender = await openSender()
      const ready = collect<{ workerId: string; credit: number; protocol: string }>(
        sender,
        "worker:ready",
      )
      const lost = collect(sender, "worker:lost")
      // Everything is queued before the worker comes, so its first TASKS hold a full credit.
      const bodies = Array.from({ length: 300 }, (_, i) => `m${i}`)
      const ids = await sendAll(sender, bodies)
      const py = ppxWorker(sender.endpoint, "--credit", "8")

      await sender.drained({ signal: AbortSignal.timeout(8000) })
      expect(ready.map(({ credit, protocol }) => ({ credit, protocol }))).toEqual([
        { credit: 8, protocol: "ppx" },
      ])
      expect(sender.workers()).toEqual([
        expect.objectContaining({ workerId: ready[0]!.workerId, protocol: "ppx", credit: 8 }),
      ])
      expect(sender.stats()).toMatchObject({
        sent: 300,
        acked: 300,
        nacked: 0,
        redelivered: 0,
        dropped: 0,
        staleAcks: 0,
        workersLost: 0,
      })
      expect(lost).toEqual([])

      // The worker's side: its READY, the WELCOME it accepted, what it took and how it answered.
      const [hello] = ofType(py.events, "ready")
      expect(hello).toMatchObject({ credit: 8, heartbeatInterval: 100, liveness: 3 })
      expect(hello!["frame"]).toMatch(/^0150505801/) // 0x01 "PPX" version 1, then msgpack
      const welcome = await py.waitFor((e) => e["event"] === "welcome")
      expect(welcome).toMatchObject({ version: 1, heartbeatInterval: 100, liveness: 3 })
      await waitFor(() => expect(sum(sizes(py, "acks"))).toBe(300))
      const tasks = tasksOf(py)
      expect(tasks.map((t) => t.body)).toEqual(bodies) // one attempt each, oldest first
      expect(tasks.map((t) => t.id)).toEqual(ids)
      expect(tasks.every((t) => t.attempt === 1)).toBe(true)
      // Batching both ways, within the credit.
      expect(Math.max(...sizes(py, "tasks"))).toBeGreaterThan(1)
      expect(Math.max(...sizes(py, "tasks"))).toBeLessThanOrEqual(8)
      expect(Math.max(...sizes(py, "acks"))).toBeGreaterThan(1)
      expect(ofType(py.events, "acks").flatMap((e) => e["ids"] as string[])).toEqual(ids)
      expect(ofType(py.events, "invalid")).toEqual([])
      expect(ofType(py.events, "request")).toEqual([]) // nothing went as plain PPP
      expect(ofType(py.events, "reconnect")).toEqual([])
    })

    it("returns the Python worker's reply bytes to request(), small and past the 1 MiB batch limit", async () => {
      const sender = await openSender()
      const ready = once(sender, "worker:ready", { signal: AbortSignal.timeout(5000) })
      const py = ppxWorker(sender.endpoint, "--credit", "4")
      await ready

      const binary = Buffer.from([0x00, 0x01, 0x12, 0x50, 0xff, 0x00])
      const reply = await sender.request(binary)
      expect(Buffer.isBuffer(reply)).toBe(true)
      expect(reply).toEqual(Buffer.concat([Buffer.from("py:"), binary]))

      const big = Buffer.alloc(2 * 1024 * 1024 + 5, 0xab)
      const bigReply = (await sender.request(big)) as Buffer
      expect(bigReply.length).toBe(big.length + 3)
      expect(bigReply.subarray(0, 3).toString()).toBe("py:")
      expect(bigReply.subarray(3).equals(big)).toBe(true)

      const tasks = tasksOf(py)
      expect(tasks.map((t) => [t.size, t.attempt])).toEqual([
        [binary.length, 1],
        [big.length, 1],
      ])
      expect(sender.stats()).toMatchObject({ acked: 2, dropped: 0, staleAcks: 0 })
    })

    it("dead-letters at once a message the Python worker NACKs with reject, and acks the others", async () => {
      const sender = await openSender()
      const dead = collect<{ id: string; attempts: number; error: string }>(sender, "message:dead")
      const ready = once(sender, "worker:ready", { signal: AbortSignal.timeout(5000) })
      const bodies = ["a", "b", "fail", "c", "d"]
      const ids = await sendAll(sender, bodies)
      const py = ppxWorker(sender.endpoint, "--credit", "8")
      await ready

      await sender.drained({ signal: AbortSignal.timeout(5000) })
      const failId = ids[2]!
      expect(dead).toEqual([{ id: failId, attempts: 1, error: "python worker: fail" }])
      expect(sender.stats()).toMatchObject({ acked: 4, dead: 1, redelivered: 0, dropped: 0 })
      const letters = await sender.deadLetters()
      expect(letters).toEqual([expect.objectContaining({ id: failId, attempts: 1 })])
      expect(String(letters[0]!.payload)).toBe("fail")

      await waitFor(() => expect(sum(sizes(py, "acks"))).toBe(4))
      expect(ofType(py.events, "nack")).toEqual([
        { event: "nack", id: failId, attempt: 1, reject: true },
      ])
      // Tried once only: a reject is not retried.
      expect(tasksOf(py).filter((t) => t.body === "fail")).toHaveLength(1)

      // The same through request(): the caller learns the message was dead-lettered.
      await expect(sender.request(Buffer.from("fail"))).rejects.toMatchObject({
        code: "PIRATE_DEAD_LETTER",
      })
      expect(String(await sender.request(Buffer.from("after")))).toBe("py:after")
    })

    it.each(["another Python PPX worker", "one of our Workers"])(
      "gives the messages of a Python PPX worker killed while holding them to %s",
      async (other) => {
        const sender = await openSender()
        const ready = collect<{ workerId: string }>(sender, "worker:ready")
        const lost = collect<{ workerId: string; requeued: number }>(sender, "worker:lost")
        // It holds every task for a minute, heartbeating meanwhile.
        const holder = ppxWorker(sender.endpoint, "--credit", "8", "--delay", "60000")
        await waitFor(() => expect(ready).toHaveLength(1))
        const bodies = Array.from({ length: 8 }, (_, i) => `job${i}`)
        const ids = await sendAll(sender, bodies)
        await waitFor(() => expect(tasksOf(holder)).toHaveLength(8))
        expect(sender.stats()).toMatchObject({ inFlight: 8, ready: 0 })

        // The second worker comes once the first holds everything: only a redelivery can reach it.
        const taken: { body: string; attempt: number }[] = []
        let second: Spawned | undefined
        if (other === "one of our Workers") {
          const worker = await Worker.open({
            connect: sender.endpoint,
            codec: "raw",
            ...FAST,
            concurrency: 4,
            handler: (payload, ctx) => {
              taken.push({ body: String(payload), attempt: ctx.attempt })
              return Buffer.concat([Buffer.from("ts:"), payload as Buffer])
            },
          })
          onTestFinished(() => worker.close())
        } else {
          second = ppxWorker(sender.endpoint, "--credit", "4")
        }
        await waitFor(() => expect(ready).toHaveLength(2))
        await holder.kill("SIGKILL")

        await sender.drained({ signal: AbortSignal.timeout(5000) })
        expect(lost).toEqual([
          expect.objectContaining({ workerId: ready[0]!.workerId, requeued: 8 }),
        ])
        expect(sender.stats()).toMatchObject({
          acked: 8,
          redelivered: 8,
          staleAcks: 0,
          dropped: 0,
          dead: 0,
          workersLost: 1,
        })
        if (second) {
          await waitFor(() => expect(sum(sizes(second, "acks"))).toBe(8))
          const redone = tasksOf(second)
          expect(redone.map((t) => t.id).sort()).toEqual([...ids].sort())
          taken.push(...redone.map((t) => ({ body: t.body, attempt: t.attempt })))
        }
        expect(taken.map((t) => t.body).sort()).toEqual([...bodies].sort())
        expect(taken.every((t) => t.attempt === 2)).toBe(true)
      },
    )

    it("lets a Python PPX worker leave on SIGTERM with GOODBYE: its messages acked, nothing requeued, not lost", async () => {
      const sender = await openSender()
      const ready = collect<{ workerId: string; protocol: string }>(sender, "worker:ready")
      const lost = collect(sender, "worker:lost")
      const requeued = collect(sender, "message:requeued")
      const leaving = ppxWorker(sender.endpoint, "--credit", "4", "--delay", "500")
      await waitFor(() => expect(ready).toHaveLength(1))
      const bodies = Array.from({ length: 8 }, (_, i) => `m${i}`)
      const ids = await sendAll(sender, bodies)
      await waitFor(() => expect(tasksOf(leaving)).toHaveLength(4))

      // SIGTERM while it holds 4 (each takes 500 ms): GOODBYE first, then their ACKS, then exit 0.
      await leaving.kill("SIGTERM")
      expect(await leaving.exited).toBe(0)
      expect(ofType(leaving.events, "goodbye")).toEqual([
        { event: "goodbye", from: "worker", held: 4 },
      ])
      expect(ofType(leaving.events, "goodbye-confirmed")).toEqual([
        { event: "goodbye-confirmed", held: 4 },
      ])
      expect(sum(sizes(leaving, "acks"))).toBe(4)
      expect(ofType(leaving.events, "exit")).toEqual([expect.objectContaining({ acked: 4 })])

      // The sender handed it nothing more, took its acks and forgot it without losing it.
      expect(tasksOf(leaving).map((t) => t.id)).toEqual(ids.slice(0, 4))
      await waitFor(() => expect(sender.workers()).toEqual([]))
      expect(sender.stats()).toMatchObject({
        acked: 4,
        ready: 4,
        inFlight: 0,
        redelivered: 0,
        workers: 0,
        workersLost: 0,
        staleAcks: 0,
        dropped: 0,
      })

      // The rest waits for the next worker.
      const next = ppxWorker(sender.endpoint, "--credit", "4")
      await sender.drained({ signal: AbortSignal.timeout(5000) })
      // Its acks may reach the sender before its stdout line reaches the test.
      await waitFor(() => expect(tasksOf(next)).toHaveLength(4))
      expect(tasksOf(next).map((t) => [t.id, t.attempt])).toEqual(ids.slice(4).map((id) => [id, 1]))
      expect(sender.stats()).toMatchObject({ acked: 8, redelivered: 0, workersLost: 0 })
      // Its disconnect after GOODBYE did not count as a loss, nor did it come back as a plain worker.
      expect(lost).toEqual([])
      expect(requeued).toEqual([])
      expect(ready.map((r) => r.protocol)).toEqual(["ppx", "ppx"])
    })

    it("forgets an idle Python PPX worker at its GOODBYE, without losing it or taking it back as plain PPP", async () => {
      const sender = await openSender()
      const ready = collect<{ workerId: string; protocol: string }>(sender, "worker:ready")
      const lost = collect(sender, "worker:lost")
      const idle = ppxWorker(sender.endpoint, "--credit", "2")
      await waitFor(() => expect(ready).toHaveLength(1))
      expect(String(await sender.request(Buffer.from("x")))).toBe("py:x")
      // It holds nothing: its GOODBYE is its last word.
      await waitFor(() =>
        expect(sender.workers()).toEqual([expect.objectContaining({ inFlight: 0 })]),
      )

      await idle.kill("SIGTERM")
      expect(await idle.exited).toBe(0)
      expect(ofType(idle.events, "goodbye")).toEqual([
        { event: "goodbye", from: "worker", held: 0 },
      ])
      // The sender answered the GOODBYE with its own: nothing follows it.
      expect(ofType(idle.events, "goodbye-confirmed")).toHaveLength(1)
      await waitFor(() => expect(sender.workers()).toEqual([]))
      // Its disconnect comes after the sender forgot it: no loss. A HEARTBEAT sent after the
      // GOODBYE would have registered it again as a plain worker, then lost it.
      expect(lost).toEqual([])
      expect(ready).toEqual([expect.objectContaining({ protocol: "ppx" })])
      expect(sender.stats()).toMatchObject({ acked: 1, workers: 0, workersLost: 0, dropped: 0 })
    })
  },
)
