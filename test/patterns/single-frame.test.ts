/**
 * TASK and ACK (docs/protocol.md): a large task or reply travels alone, its body as its own
 * frame, which ZeroMQ sends without copying — only to a peer that announced `single: true`
 * (READY for TASK, WELCOME for ACK); any other peer gets TASKS and sends ACKS as before.
 * Asserted on the wire with raw zeromq sockets playing the other side.
 */
import { once, type EventEmitter } from "node:events"
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer, Router } from "zeromq"
import {
  PPX,
  SINGLE_BYTES,
  decodeEnvelope,
  decodeReady,
  decodeWelcome,
  encodeEnvelope,
  encodeReady,
  encodeWelcome,
  unpackBodies,
  unpackEnvelopes,
  type Hello,
} from "../../lib/protocol.js"
import { msgpackCodec } from "../../lib/codec.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

const MiB = 1024 * 1024
const signal = (ms = 10_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })
const SLOW = { heartbeatInterval: 1000, liveness: 5 } as const
const TASK = Buffer.from([PPX.TASK])
const ACK = Buffer.from([PPX.ACK])

/** Bytes that differ from position to position, so a shifted or truncated copy shows. */
function pattern(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i)
  return b
}

/** A raw DEALER that plays a PPX worker: sends READY with `hello`, returns it after the WELCOME. */
async function rawWorker(
  endpoint: string,
  hello: Hello,
): Promise<{ peer: Dealer; welcome: ReturnType<typeof decodeWelcome> }> {
  const peer = new Dealer({ linger: 0, receiveTimeout: 5000 })
  onTestFinished(() => peer.close())
  peer.connect(endpoint)
  await peer.send(encodeReady(hello))
  const [cmd, meta] = await peer.receive()
  expect(cmd?.[0]).toBe(PPX.WELCOME)
  return { peer, welcome: decodeWelcome(meta) }
}

/** The next message that is not a HEARTBEAT. */
async function nextMessage(socket: { receive(): Promise<Buffer[]> }): Promise<Buffer[]> {
  for (let i = 0; i < 100; i++) {
    const msg = await socket.receive()
    const last = msg[msg.length - 1]
    if (!(last?.length === 1 && last[0] === 0x02)) return msg
  }
  throw new Error("only heartbeats")
}

/**
 * Plays the sender to our `worker` on `router`: takes its READY, answers with a WELCOME that
 * says `single: true`, waits until the worker takes it; returns a function that sends it frames.
 */
async function welcomed(
  router: Router,
  worker: EventEmitter,
): Promise<(...frames: Buffer[]) => Promise<void>> {
  const [id, ready] = await router.receive()
  const hello = decodeReady(ready as Buffer)
  const to = (...frames: Buffer[]): Promise<void> => router.send([id as Buffer, ...frames])
  await welcome(to, worker, hello)
  return to
}

/** Answers a worker's READY (`hello`) with a WELCOME that says `single: true`; waits until it takes it. */
async function welcome(
  to: (...frames: Buffer[]) => Promise<void>,
  worker: EventEmitter,
  hello: ReturnType<typeof decodeReady>,
): Promise<void> {
  await to(
    ...encodeWelcome({
      version: PPX.VERSION,
      heartbeatInterval: hello?.heartbeatInterval ?? 100,
      liveness: hello?.liveness ?? 3,
      single: true,
    }),
  )
  await once(worker, "sender:ready", signal())
}

const HELLO = { credit: 8, heartbeatInterval: 60_000, liveness: 3 } as const

describe("TASK: a large task as its own frame", () => {
  it("a worker that announced single: true gets a 1 MiB payload as [0x17, envelope, body]; small ones still in TASKS", async () => {
    const sender = await openSender({ codec: "raw" })
    const large = pattern(MiB, 1)
    const small = pattern(100, 2)
    const { peer, welcome } = await rawWorker(sender.endpoint, { ...HELLO, single: true })
    expect(welcome.single, "the WELCOME says the sender takes ACK").toBe(true)
    const reply = sender.request(large, { timeout: 8000 })
    const msg = await nextMessage(peer)
    expect(msg, "TASK is [0x17, envelope, body]").toHaveLength(3)
    expect([...(msg[0] as Buffer)]).toEqual([PPX.TASK])
    const env = decodeEnvelope(msg[1])
    expect(env).toMatchObject({ attempt: 1 })
    expect((msg[2] as Buffer).equals(large), "the body frame is the payload, byte for byte").toBe(
      true,
    )
    // A small message still goes packed.
    const sent = sender.send(small)
    const packed = await nextMessage(peer)
    expect([...(packed[0] as Buffer)]).toEqual([PPX.TASKS])
    const envelopes = unpackEnvelopes(packed[1])
    expect(unpackBodies(packed[2], 1)?.[0]?.equals(small)).toBe(true)
    await sent
    // Answer the large one with ACK [0x18, envelope, reply] of 200 KiB, the small one with ACKS.
    const answer = pattern(200 * 1024, 3)
    await peer.send([ACK, msg[1] as Buffer, answer])
    expect((await reply) as Buffer).toEqual(answer)
    await peer.send([
      Buffer.from([PPX.ACKS]),
      packed[1] as Buffer,
      Buffer.from([0, 0, 0, 0]), // one empty reply
    ])
    expect(envelopes).toHaveLength(1)
    await sender.drained(signal())
    expect(sender.stats()).toMatchObject({ acked: 2, dropped: 0, staleAcks: 0 })
  })

  it("a batch is cut before a large message, which goes alone; without single: true everything goes in TASKS", async () => {
    for (const single of [true, false]) {
      const sender = await openSender({ codec: "raw" })
      const payloads = [100, SINGLE_BYTES, 100, 100].map((n, i) => pattern(n, i))
      for (const p of payloads) await sender.send(p)
      const { peer, welcome } = await rawWorker(sender.endpoint, {
        ...HELLO,
        ...(single ? { single: true as const } : {}),
      })
      expect(welcome.single).toBe(single || undefined)
      const seen: { cmd: number; bodies: Buffer[]; envelopes: Buffer[] }[] = []
      for (let n = 0; n < payloads.length;) {
        const msg = await nextMessage(peer)
        const cmd = msg[0]?.[0] as number
        const envelopes = cmd === PPX.TASK ? [msg[1] as Buffer] : unpackEnvelopes(msg[1])
        const bodies =
          cmd === PPX.TASK ? [msg[2] as Buffer] : unpackBodies(msg[2], envelopes?.length ?? 0)
        expect(bodies, `a well-formed message (0x${cmd.toString(16)})`).not.toBeNull()
        seen.push({ cmd, bodies: bodies ?? [], envelopes: envelopes ?? [] })
        n += bodies?.length ?? 0
      }
      const shape = seen.map((s) => [s.cmd, s.bodies.map((b) => b.length)])
      if (single)
        expect(shape).toEqual([
          [PPX.TASKS, [100]],
          [PPX.TASK, [SINGLE_BYTES]],
          [PPX.TASKS, [100, 100]],
        ])
      else expect(shape).toEqual([[PPX.TASKS, [100, SINGLE_BYTES, 100, 100]]])
      const all = seen.flatMap((s) => s.bodies)
      for (const [i, p] of payloads.entries()) expect(all[i]?.equals(p)).toBe(true)
      for (const s of seen)
        for (const e of s.envelopes) await peer.send([ACK, e, Buffer.from("ok")])
      await sender.drained(signal())
      expect(sender.stats()).toMatchObject({ acked: 4, dropped: 0 })
      await sender.close()
    }
  })

  it("the default codec's large Buffer goes as a split body: TASK [0x17, envelope, bin header, the Buffer]; packed whole without single: true; whole to a PPP worker", async () => {
    const large = pattern(MiB, 5)
    const whole = msgpackCodec.encode(large)
    for (const single of [true, false]) {
      const sender = await openSender()
      await sender.send(large)
      const { peer } = await rawWorker(sender.endpoint, {
        ...HELLO,
        ...(single ? { single: true as const } : {}),
      })
      const msg = await nextMessage(peer)
      if (single) {
        expect(msg, "[0x17, envelope, header, bytes]").toHaveLength(4)
        expect(msg[0]?.[0]).toBe(PPX.TASK)
        expect(msg[2]).toEqual(whole.subarray(0, 5))
        expect(msg[3]?.equals(large)).toBe(true)
        await peer.send([ACK, msg[1] as Buffer, Buffer.from([0xc0])])
      } else {
        expect(msg[0]?.[0]).toBe(PPX.TASKS)
        const envelopes = unpackEnvelopes(msg[1])
        expect(unpackBodies(msg[2], 1)?.[0]?.equals(whole)).toBe(true)
        await peer.send([ACK, envelopes?.[0] as Buffer, Buffer.from([0xc0])])
      }
      await sender.drained(signal())
      await sender.close()
    }
    // A plain PPP worker: [envelope, "", body], the body whole.
    const sender = await openSender()
    await sender.send(large)
    const got: unknown[] = []
    await openWorker(sender.endpoint, {
      protocol: "ppp",
      handler: (p) => {
        got.push(p)
        return null
      },
    })
    await sender.drained(signal())
    expect((got[0] as Buffer).equals(large)).toBe(true)
  })

  it("the sender counts and drops a malformed ACK", async () => {
    const sender = await openSender({ codec: "raw" })
    const { peer } = await rawWorker(sender.endpoint, { ...HELLO, single: true })
    await sender.send(pattern(SINGLE_BYTES, 5))
    const [, envelope] = await nextMessage(peer)
    const foreign = Buffer.from("not one of ours")
    await peer.send([ACK, envelope as Buffer]) // no reply frame
    await peer.send([ACK, envelope as Buffer, Buffer.from("r"), Buffer.from("extra")])
    await peer.send([ACK, Buffer.alloc(256, 0x50), Buffer.from("r")]) // envelope over 255 bytes
    await peer.send([ACK, foreign, Buffer.from("r")]) // not our envelope
    await peer.send([ACK, envelope as Buffer, Buffer.from("r")])
    await sender.drained(signal())
    expect(sender.stats()).toMatchObject({ acked: 1, dropped: 4, staleAcks: 0 })
  })
})

describe("our Worker and TASK / ACK", () => {
  it("announces single: true, takes TASK like a one-task TASKS, answers a large reply with ACK, and drops malformed TASKs", async () => {
    // A raw ROUTER plays the sender.
    const router = new Router({ linger: 0, receiveTimeout: 5000 })
    onTestFinished(() => router.close())
    await router.bind("tcp://127.0.0.1:*")
    const handled: Buffer[] = []
    const worker = await openWorker(router.lastEndpoint as string, {
      codec: "raw",
      handler: (p) => {
        handled.push(p as Buffer)
        return Buffer.concat([Buffer.from("re:"), p as Buffer])
      },
    })
    const [id, ready] = await router.receive()
    const hello = decodeReady(ready as Buffer)
    expect(hello).toMatchObject({ single: true })
    const to = (...frames: Buffer[]): Promise<void> => router.send([id as Buffer, ...frames])
    const envelope = encodeEnvelope("00000000000000a1", 1)
    const body = pattern(MiB, 7)
    await to(TASK, envelope, body) // before WELCOME: not a PPX session yet
    await welcome(to, worker, hello)
    await to(TASK, envelope) // no body frame
    await to(TASK, envelope, body, Buffer.from("extra"), Buffer.from("more")) // 3 body frames
    await to(TASK, Buffer.alloc(256, 0x50), body) // envelope over 255 bytes
    await to(TASK, envelope, body)
    const [, ...ack] = await nextMessage(router)
    expect(ack, "ACK is [0x18, envelope, reply]").toHaveLength(3)
    expect([...(ack[0] as Buffer)]).toEqual([PPX.ACK])
    expect(ack[1]).toEqual(envelope)
    expect((ack[2] as Buffer).equals(Buffer.concat([Buffer.from("re:"), body]))).toBe(true)
    expect(handled).toHaveLength(1)
    expect(handled[0]?.equals(body)).toBe(true)
    expect(worker.stats()).toMatchObject({ received: 1, acked: 1, dropped: 4 })
  })

  it("takes a TASK whose body comes in two frames (a split body): msgpack gets the bin's bytes as the frame, raw the body joined", async () => {
    for (const codec of ["msgpack", "raw"] as const) {
      const router = new Router({ linger: 0, receiveTimeout: 5000 })
      onTestFinished(() => router.close())
      await router.bind("tcp://127.0.0.1:*")
      const handled: unknown[] = []
      const worker = await openWorker(router.lastEndpoint as string, {
        codec,
        handler: (p) => {
          handled.push(p)
          return codec === "raw" ? Buffer.alloc(0) : null
        },
      })
      const to = await welcomed(router, worker)
      const rest = pattern(MiB, 3)
      const header = Buffer.from([0xc6, 0, 0, 0, 0])
      header.writeUInt32BE(rest.length, 1)
      await to(TASK, encodeEnvelope("00000000000000b1", 1), header, rest)
      const [, ...acks] = await nextMessage(router)
      const envelope = encodeEnvelope("00000000000000b1", 1)
      // A small reply: in ACKS, its envelope packed with its length.
      expect(acks[1]).toEqual(Buffer.concat([Buffer.from([envelope.length]), envelope]))
      expect(handled).toHaveLength(1)
      const got = handled[0] as Buffer
      if (codec === "msgpack") expect(got.equals(rest)).toBe(true)
      else expect(got.equals(Buffer.concat([header, rest]))).toBe(true)
      expect(worker.stats()).toMatchObject({ received: 1, dropped: 0 })
    }
  })

  it("a small reply still goes in ACKS, and a sender that did not say single: true gets ACKS for a large one", async () => {
    for (const single of [true, false]) {
      const router = new Router({ linger: 0, receiveTimeout: 5000 })
      onTestFinished(() => router.close())
      await router.bind("tcp://127.0.0.1:*")
      await openWorker(router.lastEndpoint as string, {
        codec: "raw",
        handler: (p) => (String(p) === "small" ? Buffer.from("s") : pattern(SINGLE_BYTES, 9)),
      })
      const [id, ready] = await router.receive()
      const hello = decodeReady(ready as Buffer)
      await router.send([
        id as Buffer,
        ...encodeWelcome({
          version: PPX.VERSION,
          heartbeatInterval: hello?.heartbeatInterval ?? 100,
          liveness: hello?.liveness ?? 3,
          ...(single ? { single: true as const } : {}),
        }),
      ])
      for (const [i, text] of ["small", "large"].entries()) {
        const envelope = encodeEnvelope(`0000000000000b0${i}`, 1)
        await router.send([id as Buffer, TASK, envelope, Buffer.from(text)])
        const [, cmd, , replies] = await nextMessage(router)
        const expected = i === 1 && single ? PPX.ACK : PPX.ACKS
        expect([...(cmd as Buffer)], `${text} reply, single: ${single}`).toEqual([expected])
        const reply = expected === PPX.ACK ? replies : unpackBodies(replies, 1)?.[0]
        expect(reply?.length).toBe(i === 0 ? 1 : SINGLE_BYTES)
      }
    }
  })

  for (const codec of ["raw", "msgpack"] as const)
    it(`handles 2 MiB and 8 MiB payloads end to end, byte for byte (${codec})`, async () => {
      const sender = await openSender({ codec })
      const seen: Buffer[] = []
      /** Payloads the handler got as a slice of a larger received frame (a packed one). */
      const sliced: number[] = []
      await openWorker(sender.endpoint, {
        ...SLOW,
        codec,
        handler: (p) => {
          const body = p as Buffer
          seen.push(body)
          // The raw codec hands over the received body frame itself: a frame of its own (TASK),
          // not a view into a packed TASKS frame.
          if (codec === "raw" && body.buffer.byteLength !== body.length) sliced.push(body.length)
          return p // the same bytes back, as a reply
        },
      })
      for (const [i, size] of [2 * MiB, 8 * MiB].entries()) {
        const payload = pattern(size, 11 + i)
        const reply = (await sender.request(payload, { timeout: 20_000 })) as Buffer
        expect(Buffer.isBuffer(reply)).toBe(true)
        expect(reply.equals(payload), `reply of ${size} bytes`).toBe(true)
        expect(seen[i]?.equals(payload), `payload of ${size} bytes`).toBe(true)
      }
      const sent = await sender.send(pattern(8 * MiB, 13))
      expect(typeof sent).toBe("string")
      await sender.drained(signal(20_000))
      expect(sender.stats()).toMatchObject({ acked: 3, dropped: 0, redelivered: 0 })
      expect(seen[2]?.equals(pattern(8 * MiB, 13))).toBe(true)
      expect(sliced, "payloads received inside a larger frame").toEqual([])
    }, 30_000)
})
