/** TASK and ACK (one large task or reply as its own frame) and their `single` keys. */
import { describe, expect, it } from "vitest"
import { msgpackCodec, rawCodec } from "../../lib/codec.js"
import {
  PPX,
  SINGLE_BYTES,
  decodeReady,
  decodeWelcome,
  encodeReady,
  encodeWelcome,
  singleEnvelope,
} from "../../lib/protocol.js"

const HELLO = { version: PPX.VERSION, credit: 4, heartbeatInterval: 1000, liveness: 3 } as const

describe("the single key of READY and WELCOME", () => {
  it("READY may say the worker takes TASK; any other value reads as absent", () => {
    expect(decodeReady(encodeReady({ ...HELLO, single: true }))).toEqual({ ...HELLO, single: true })
    expect(decodeReady(encodeReady(HELLO))).toEqual(HELLO)
    const other = encodeReady({ ...HELLO, single: 1 as unknown as true })
    expect(decodeReady(other)).toEqual(HELLO)
  })

  it("WELCOME may say the sender takes ACK; any other value reads as absent", () => {
    const w = { version: 1, heartbeatInterval: 1000, liveness: 3 }
    const [, meta] = encodeWelcome({ ...w, single: true })
    expect(decodeWelcome(meta)).toEqual({ ...w, single: true })
    const [, plain] = encodeWelcome({ ...w, single: "yes" as unknown as true })
    expect(decodeWelcome(plain)).toEqual(w)
  })
})

describe("singleEnvelope", () => {
  it("is the envelope of exactly [envelope, body] with an envelope of 1 to 255 bytes", () => {
    const env = Buffer.from("e")
    expect(singleEnvelope([env, Buffer.alloc(0)])).toBe(env)
    expect(singleEnvelope([Buffer.alloc(255, 1), Buffer.from("b")])?.length).toBe(255)
    expect(singleEnvelope([env])).toBeNull()
    expect(singleEnvelope([env, Buffer.from("b"), Buffer.from("c")])).toBeNull()
    expect(singleEnvelope([Buffer.alloc(0), Buffer.from("b")])).toBeNull()
    expect(singleEnvelope([Buffer.alloc(256, 1), Buffer.from("b")])).toBeNull()
  })
})

describe("no extra copies of a large payload in the codecs", () => {
  it("raw passes a Buffer through and back untouched; msgpack writes a Buffer with one copy and reads a bin as a view", () => {
    const payload = Buffer.alloc(SINGLE_BYTES * 16, 7)
    expect(rawCodec.encode(payload)).toBe(payload)
    expect(rawCodec.decode(payload)).toBe(payload)
    const frame = msgpackCodec.encode(payload)
    // One allocation of exactly header + payload: the bytes were copied once, into it.
    expect(frame.length).toBe(5 + payload.length)
    expect(frame.buffer.byteLength).toBe(frame.length)
    const back = msgpackCodec.decode(frame) as Buffer
    expect(back.buffer).toBe(frame.buffer)
    expect(back.equals(payload)).toBe(true)
  })
})
