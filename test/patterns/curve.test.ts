import { once } from "node:events"
import { describe, expect, it } from "vitest"
import { generateKeyPair } from "../../lib/security.js"
import { LazyPirateClient, LazyPirateServer, Sender, Worker } from "../../patterns/index.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { tcpProxy } from "../helpers/tcp-proxy.js"
import { waitFor } from "../helpers/wait.js"

const signal = (ms = 8000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

describe("CURVE security", () => {
  it("serves allowed workers only; a worker with another key gets nothing and is counted", async () => {
    const server = generateKeyPair()
    const allowed = generateKeyPair()
    const stranger = generateKeyPair()
    const sender = await openSender({ curve: { ...server, allow: [allowed.publicKey] } })
    const strangerGot: unknown[] = []
    const s = await openWorker(sender.endpoint, {
      curve: { ...stranger, serverKey: server.publicKey },
      handler: (p) => void strangerGot.push(p),
    })
    await waitFor(() =>
      expect(sender.stats().denied, "a denied handshake").toBeGreaterThanOrEqual(1),
    )
    const got: unknown[] = []
    await openWorker(sender.endpoint, {
      curve: { ...allowed, serverKey: server.publicKey },
      handler: (p) => void got.push(p),
      concurrency: 4,
    })
    await Promise.all(Array.from({ length: 50 }, (_, i) => sender.send(i)))
    await sender.drained(signal())
    expect(got).toHaveLength(50)
    expect(strangerGot).toEqual([])
    expect(s.stats().received).toBe(0)
    expect(sender.stats().workers).toBe(1)
  })

  it("a plaintext worker cannot talk to a CURVE sender", async () => {
    const server = generateKeyPair()
    const client = generateKeyPair()
    const sender = await openSender({ curve: server })
    const plainGot: unknown[] = []
    const plain = await openWorker(sender.endpoint, { handler: (p) => void plainGot.push(p) })
    const got: unknown[] = []
    await openWorker(sender.endpoint, {
      curve: { ...client, serverKey: server.publicKey },
      handler: (p) => void got.push(p),
    })
    await Promise.all(Array.from({ length: 20 }, (_, i) => sender.send(i)))
    await sender.drained(signal())
    expect(got).toHaveLength(20)
    expect(plainGot).toEqual([])
    expect(plain.stats().received).toBe(0)
  })

  it("counts plaintext, wrong-server-key and unlisted attempts in denied; the refused worker says why", async () => {
    const server = generateKeyPair()
    const allowed = generateKeyPair()
    const sender = await openSender({ curve: { ...server, allow: [allowed.publicKey] } })
    const cases = [
      { curve: undefined, reason: /refused by the sender's CURVE policy: it requires CURVE/ },
      {
        curve: { ...allowed, serverKey: generateKeyPair().publicKey },
        reason: /refused by the sender's CURVE policy, or a wrong serverKey/,
      },
      {
        curve: { ...generateKeyPair(), serverKey: server.publicKey },
        reason:
          /refused by the sender's CURVE policy \(ZAP status 400: this public key is not allowed\)/,
      },
    ]
    for (const { curve, reason } of cases) {
      const before = sender.stats().denied
      const w = await openWorker(sender.endpoint, { ...(curve ? { curve } : {}), handler: () => 1 })
      const [lost] = (await once(w, "sender:lost", signal())) as [{ reason: string }]
      expect(lost.reason).toMatch(reason)
      await waitFor(() =>
        expect(sender.stats().denied, "a denied handshake").toBeGreaterThan(before),
      )
      await w.close()
    }
    expect(sender.stats().workers).toBe(0)
  })

  it("keeps payloads unreadable on the wire (and they are readable without CURVE)", async () => {
    const marker = "TOP-SECRET-PAYLOAD-7a3f"
    for (const secure of [true, false]) {
      const server = generateKeyPair()
      const client = generateKeyPair()
      const sender = await openSender(secure ? { curve: server } : {})
      const proxy = await tcpProxy(sender.endpoint)
      await openWorker(proxy.endpoint, {
        ...(secure ? { curve: { ...client, serverKey: server.publicKey } } : {}),
        handler: (p) => `${String(p)} done`,
      })
      expect(await sender.request(marker)).toBe(`${marker} done`)
      expect(proxy.captured().includes(marker)).toBe(!secure)
    }
  })

  it("protects Lazy Pirate request-reply: an allowed client is answered, a stranger times out", async () => {
    const server = generateKeyPair()
    const allowed = generateKeyPair()
    const stranger = generateKeyPair()
    const lp = await LazyPirateServer.open({
      bind: "tcp://127.0.0.1:*",
      curve: { ...server, allow: [allowed.publicKey] },
      handler: (p) => p,
    })
    const good = new LazyPirateClient({
      connect: lp.endpoint,
      curve: { ...allowed, serverKey: server.publicKey },
    })
    const bad = new LazyPirateClient({
      connect: lp.endpoint,
      timeout: 200,
      retries: 1,
      curve: { ...stranger, serverKey: server.publicKey },
    })
    try {
      expect(await good.request("hi")).toBe("hi")
      await expect(bad.request("hi")).rejects.toMatchObject({ code: "PIRATE_TIMEOUT" })
    } finally {
      await good.close()
      await bad.close()
      await lp.close()
    }
  })

  it("rejects malformed keys at construction, naming the option", () => {
    const k = generateKeyPair()
    expect(
      () => new Sender({ bind: "tcp://127.0.0.1:*", curve: { ...k, allow: ["short"] } }),
    ).toThrow(/'curve.allow\[0\]'/)
    expect(
      () =>
        new Worker({
          connect: "tcp://127.0.0.1:1",
          handler: () => 1,
          curve: { ...k, serverKey: "x" },
        }),
    ).toThrow(/'curve.serverKey'/)
    expect(
      () => new Sender({ bind: "tcp://127.0.0.1:*", curve: { publicKey: k.publicKey } as never }),
    ).toThrow(/'curve.secretKey'/)
  })
})
