/**
 * Oversized messages: every socket the library creates limits inbound messages
 * (`maxMessageSize`); libzmq drops a larger message and disconnects its sender. Each role must
 * stay up and keep serving everyone else, and a worker dropped that way is counted as lost and
 * its work redelivered.
 */
import { once } from "node:events"
import { readFile, readdir } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer, Router } from "zeromq"
import {
  LazyPirateClient,
  LazyPirateServer,
  ParanoidPirateQueue,
  Sender,
  Worker,
} from "../../patterns/index.js"
import { msgpackCodec, packMeta } from "../../lib/codec.js"
import { FRAME_EMPTY, FRAME_READY, PPP, PPX, encodeEnvelope } from "../../lib/protocol.js"
import { guardProcess } from "./guard.js"
import { Inbox } from "./peers.js"
import { waitFor } from "../helpers/wait.js"

const guard = guardProcess()
const root = fileURLToPath(new URL("../../", import.meta.url))
const LIMIT = 4096
const BIG = Buffer.alloc(2 * LIMIT, 0x61)
const signal = (ms = 5000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(join(root, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...(await sourceFiles(path)))
    else if (entry.name.endsWith(".ts")) out.push(path)
  }
  return out
}

/**
 * The argument text of each `new <Socket>(…)` in `source`, and whether the socket is bound to
 * an inproc endpoint right after (the ZAP handler): libzmq applies no inbound limit on inproc,
 * whose messages are never decoded from a stream, and only libzmq itself talks to it.
 */
function socketConstructions(source: string): { type: string; args: string; inproc: boolean }[] {
  const found: { type: string; args: string; inproc: boolean }[] = []
  const re =
    /new\s+(Router|Dealer|Request|Reply|Pair|Push|Pull|Publisher|Subscriber|XPublisher|XSubscriber|Stream)\s*\(/g
  for (let m = re.exec(source); m; m = re.exec(source)) {
    let depth = 1
    let i = re.lastIndex
    while (i < source.length && depth > 0) {
      if (source[i] === "(") depth++
      else if (source[i] === ")") depth--
      i++
    }
    const inproc = /^[^]{0,200}?\.bind\(\s*["'`]inproc:\/\//.test(source.slice(i, i + 200))
    found.push({ type: m[1] as string, args: source.slice(re.lastIndex, i - 1), inproc })
  }
  return found
}

function openRaw<T extends Dealer | Router>(socket: T): T {
  onTestFinished(() => socket.close())
  return socket
}

/** A request over the limit gets no answer (the client times out); a small one is echoed. */
async function refusesBigServesSmall(endpoint: string): Promise<void> {
  const client = (timeout: number): LazyPirateClient => {
    const c = new LazyPirateClient({ connect: endpoint, codec: "raw", timeout, retries: 1 })
    onTestFinished(() => c.close())
    return c
  }
  await expect(client(300).request(BIG)).rejects.toMatchObject({ code: "PIRATE_TIMEOUT" })
  expect(await client(2000).request(Buffer.from("ping"))).toEqual(Buffer.from("ping"))
}

describe("oversized messages", () => {
  it("every ZeroMQ socket the library creates sets maxMessageSize", async () => {
    const files = [
      ...(await sourceFiles("lib")),
      ...(await sourceFiles("patterns")),
      ...(await sourceFiles("bin")),
    ]
    const sockets: string[] = []
    for (const file of files) {
      for (const { type, args, inproc } of socketConstructions(
        await readFile(join(root, file), "utf8"),
      )) {
        if (inproc) continue
        sockets.push(`${file}: new ${type}`)
        expect(args, `${file}: new ${type}(…) without maxMessageSize`).toMatch(/maxMessageSize/)
      }
    }
    // The roles' sockets: sender/queue backend, queue frontend, worker, server, client.
    expect(sockets.length).toBeGreaterThanOrEqual(5)
  })

  it("Sender (default limit, 16 MiB): a worker that sends more is disconnected and counted as lost", async () => {
    const sender = await Sender.open({ bind: "tcp://127.0.0.1:*", heartbeatInterval: 100 })
    onTestFinished(() => sender.close())
    guard.watch(sender)
    const peer = openRaw(new Dealer({ linger: 0 }))
    peer.connect(sender.endpoint)
    const ready = once(sender, "worker:ready", signal())
    await peer.send(FRAME_READY)
    await ready
    const lost = once(sender, "worker:lost", signal())
    await peer.send([FRAME_EMPTY, Buffer.alloc(16 * 1024 * 1024 + 1)])
    const [event] = (await lost) as [{ reason: string }]
    expect(event.reason).toMatch(/disconnected/)
    expect(sender.stats()).toMatchObject({ workersLost: 1, workers: 0, dropped: 0 })
    const worker = await Worker.open({
      connect: sender.endpoint,
      handler: (p) => p,
      heartbeatInterval: 100,
    })
    onTestFinished(() => worker.close())
    expect(await sender.request({ still: "serving" })).toEqual({ still: "serving" })
  })

  it("Sender: an oversized ack drops its worker; the message is redelivered to another worker", async () => {
    const sender = await Sender.open({
      bind: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
      maxMessageSize: LIMIT,
    })
    onTestFinished(() => sender.close())
    guard.watch(sender)
    // A plain PPP worker takes the request and answers with too big a reply.
    const peer = openRaw(new Dealer({ linger: 0 }))
    const inbox = new Inbox(peer)
    peer.connect(sender.endpoint)
    await peer.send(FRAME_READY)
    await waitFor(() => expect(sender.stats().workers, "the raw worker").toBe(1))
    const payload = { n: 1, text: "x".repeat(100) }
    const reply = sender.request(payload)
    const task = await inbox.waitFor((m) => m.length === 3, "the task")
    const requeued = once(sender, "message:requeued", signal())
    await peer.send([task[0] as Buffer, FRAME_EMPTY, BIG])
    const [event] = (await requeued) as [{ reason: string }]
    expect(event.reason).toMatch(/worker lost: disconnected/)
    // A well-behaved worker gets the message and its reply is the answer.
    const worker = await Worker.open({
      connect: sender.endpoint,
      handler: (p) => p,
      heartbeatInterval: 100,
    })
    onTestFinished(() => worker.close())
    expect(await reply).toEqual(payload)
    expect(sender.stats()).toMatchObject({ workersLost: 1, redelivered: 1, acked: 1 })
  })

  it("Worker: an oversized task from its sender makes it reconnect; it serves again", async () => {
    const router = openRaw(new Router({ linger: 0 }))
    await router.bind("tcp://127.0.0.1:*")
    const inbox = new Inbox(router)
    let calls = 0
    const worker = await Worker.open({
      connect: router.lastEndpoint as string,
      maxMessageSize: LIMIT,
      heartbeatInterval: 1000,
      reconnect: { initial: 20, max: 100 },
      closeTimeout: 200,
      handler: (p) => {
        calls++
        return p
      },
    })
    onTestFinished(() => worker.close())
    guard.watch(worker)
    const isReady = (m: Buffer[]): boolean => m.length === 2 && m[1]?.[0] === PPP.READY
    const first = await inbox.waitFor(isReady, "READY")
    const welcome = [
      Buffer.from([PPX.WELCOME]),
      packMeta({ version: 1, heartbeatInterval: 1000, liveness: 3 }),
    ]
    await router.send([first[0] as Buffer, ...welcome])
    await router.send([first[0] as Buffer, encodeEnvelope("0000000000000001", 1), FRAME_EMPTY, BIG])
    const second = await inbox.waitFor(
      (m) => isReady(m) && !m[0]?.equals(first[0] as Buffer),
      "READY from a new connection",
    )
    expect(worker.stats().reconnects).toBeGreaterThanOrEqual(1)
    await router.send([second[0] as Buffer, ...welcome])
    const env = encodeEnvelope("0000000000000002", 1)
    const body = msgpackCodec.encode({ small: true })
    await router.send([second[0] as Buffer, env, FRAME_EMPTY, body])
    await inbox.waitFor((m) => m.length === 4 && m[1]?.equals(env) === true, "the reply")
    expect(calls).toBe(1)
  })

  it("LazyPirateServer: an oversized request is refused (the client times out); others are served", async () => {
    const server = await LazyPirateServer.open({
      bind: "tcp://127.0.0.1:*",
      maxMessageSize: LIMIT,
      codec: "raw",
      handler: (p) => p,
    })
    onTestFinished(() => server.close())
    guard.watch(server)
    await refusesBigServesSmall(server.endpoint)
    expect(server.stats()).toMatchObject({ requests: 1, replies: 1 })
  })

  it("ParanoidPirateQueue frontend: an oversized request is refused; others are served", async () => {
    const queue = await ParanoidPirateQueue.open({
      frontend: "tcp://127.0.0.1:*",
      backend: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
      maxMessageSize: LIMIT,
    })
    onTestFinished(() => queue.close())
    guard.watch(queue)
    const worker = await Worker.open({
      connect: queue.backendEndpoint,
      codec: "raw",
      handler: (p) => p,
      heartbeatInterval: 100,
    })
    onTestFinished(() => worker.close())
    await refusesBigServesSmall(queue.frontendEndpoint)
    expect(queue.stats()).toMatchObject({ requests: 1, replies: 1 })
  })

  it("LazyPirateClient: an oversized reply is refused (timeout); the client keeps working", async () => {
    const server = await LazyPirateServer.open({
      bind: "tcp://127.0.0.1:*",
      codec: "raw",
      handler: (p) => (String(p) === "big" ? BIG : p),
    })
    onTestFinished(() => server.close())
    const client = new LazyPirateClient({
      connect: server.endpoint,
      codec: "raw",
      maxMessageSize: LIMIT,
      timeout: 300,
      retries: 1,
    })
    onTestFinished(() => client.close())
    await expect(client.request(Buffer.from("big"))).rejects.toMatchObject({
      code: "PIRATE_TIMEOUT",
    })
    expect(await client.request(Buffer.from("ping"), { timeout: 2000 })).toEqual(
      Buffer.from("ping"),
    )
  })
})
