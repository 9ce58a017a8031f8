/**
 * CURVE encryption and authentication (RFC 26/CurveZMQ) for every role, with an allow list of
 * client public keys enforced by a ZAP handler (RFC 27/ZAP).
 */
import { randomUUID } from "node:crypto"
import { Router, curveKeyPair, type Socket } from "zeromq"
import { debug } from "./debug.js"
import { describe } from "./validate.js"

/** A CURVE key pair, Z85-encoded (40 characters each). */
export interface KeyPair {
  publicKey: string
  secretKey: string
}

/** CURVE for a binding role (`Sender`, `ParanoidPirateQueue`, `LazyPirateServer`). */
export interface CurveServerOptions extends KeyPair {
  /** Z85 public keys of the clients/workers allowed to connect; absent = anyone who knows the server's public key. */
  allow?: readonly string[]
}

/** CURVE for a connecting role (`Worker`, `LazyPirateClient`). */
export interface CurveClientOptions extends KeyPair {
  /** The server's Z85 public key. */
  serverKey: string
}

/** Makes a new CURVE key pair. Keep the secret key secret; hand the public key to peers. */
export function generateKeyPair(): KeyPair {
  return curveKeyPair()
}

const Z85 = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/

function assertKey(name: string, value: unknown): asserts value is string {
  if (typeof value !== "string" || !Z85.test(value)) {
    throw new TypeError(
      `'${name}' must be a 40-character Z85 CURVE key (see generateKeyPair()), got ${describe(value)}`,
    )
  }
}

/** Validates server-side CURVE options (TypeError naming the option). */
export function validateCurveServer(value: unknown): CurveServerOptions {
  if (typeof value !== "object" || value === null)
    throw new TypeError(`'curve' must be { publicKey, secretKey, allow? }, got ${describe(value)}`)
  const v = value as Record<string, unknown>
  assertKey("curve.publicKey", v["publicKey"])
  assertKey("curve.secretKey", v["secretKey"])
  const allow = v["allow"]
  if (allow === undefined) return { publicKey: v["publicKey"], secretKey: v["secretKey"] }
  if (!Array.isArray(allow))
    throw new TypeError(`'curve.allow' must be an array of Z85 public keys, got ${describe(allow)}`)
  allow.forEach((k, i) => assertKey(`curve.allow[${i}]`, k))
  return { publicKey: v["publicKey"], secretKey: v["secretKey"], allow: [...(allow as string[])] }
}

/** Validates client-side CURVE options (TypeError naming the option). */
export function validateCurveClient(value: unknown): CurveClientOptions {
  if (typeof value !== "object" || value === null) {
    throw new TypeError(
      `'curve' must be { publicKey, secretKey, serverKey }, got ${describe(value)}`,
    )
  }
  const v = value as Record<string, unknown>
  assertKey("curve.publicKey", v["publicKey"])
  assertKey("curve.secretKey", v["secretKey"])
  assertKey("curve.serverKey", v["serverKey"])
  return { publicKey: v["publicKey"], secretKey: v["secretKey"], serverKey: v["serverKey"] }
}

/** Makes a connecting socket a CURVE client. Call before `connect()`. */
export function applyCurveClient(socket: Socket, curve: CurveClientOptions): void {
  socket.curveServerKey = curve.serverKey
  socket.curvePublicKey = curve.publicKey
  socket.curveSecretKey = curve.secretKey
}

/**
 * Makes a binding socket a CURVE server. With an allow list, registers it with this process's
 * ZAP handler under a domain of its own. Call before `bind()`; call the returned function when
 * the socket closes. `onDenied` is called for each refused handshake.
 */
export async function applyCurveServer(
  socket: Socket,
  curve: CurveServerOptions,
  onDenied?: (publicKey: string) => void,
): Promise<() => void> {
  socket.curveServer = true
  socket.curveSecretKey = curve.secretKey
  socket.curvePublicKey = curve.publicKey
  if (!curve.allow) return () => undefined
  const domain = `pirate-${randomUUID()}`
  socket.zapDomain = domain
  return zap.register(domain, new Set(curve.allow), onDenied)
}

/**
 * The process's ZAP handler: one ROUTER on `inproc://zeromq.zap.01` (one per ZeroMQ context), shared
 * by every CURVE server of this library, each under its own ZAP domain. Unknown domains (sockets
 * that are not ours) are allowed, so the handler never changes how other sockets authenticate.
 */
class ZapHandler {
  readonly #domains = new Map<
    string,
    { allow: Set<string>; onDenied: ((key: string) => void) | undefined }
  >()
  #router: Router | undefined
  #starting: Promise<void> | undefined

  /** Domains registered (tests: a closed or failed server leaves none behind). */
  get size(): number {
    return this.#domains.size
  }

  async register(
    domain: string,
    allow: Set<string>,
    onDenied?: (key: string) => void,
  ): Promise<() => void> {
    this.#domains.set(domain, { allow, onDenied })
    await (this.#starting ??= this.#start())
    return () => {
      this.#domains.delete(domain)
      if (this.#domains.size === 0) this.#stop()
    }
  }

  async #start(): Promise<void> {
    const router = new Router({ linger: 0 })
    await router.bind("inproc://zeromq.zap.01")
    this.#router = router
    this.#loop(router).catch((err: unknown) => debug("zap: handler stopped: %s", String(err)))
  }

  #stop(): void {
    this.#router?.close()
    this.#router = undefined
    this.#starting = undefined
  }

  async #loop(router: Router): Promise<void> {
    for (;;) {
      let msg: Buffer[]
      try {
        msg = await router.receive()
      } catch {
        return // closed
      }
      // [routing id, "", version, request id, domain, address, identity, mechanism, credentials…]
      const [id, , version, requestId, domainFrame, address, , mechanism, credential] = msg
      if (!id || !requestId) continue
      const domain = domainFrame?.toString() ?? ""
      const entry = this.#domains.get(domain)
      let allowed = true
      let key = ""
      if (entry) {
        key = credential && credential.length === 32 ? z85(credential) : ""
        allowed = mechanism?.toString() === "CURVE" && entry.allow.has(key)
        if (!allowed) {
          debug("zap: denied %s from %s", key || "(no key)", address?.toString() ?? "?")
          entry.onDenied?.(key)
        }
      }
      const reply = [
        id,
        Buffer.alloc(0),
        version ?? Buffer.from("1.0"),
        requestId,
        Buffer.from(allowed ? "200" : "400"),
        Buffer.from(allowed ? "OK" : "public key not allowed"),
        Buffer.from(allowed ? key : ""),
        Buffer.alloc(0),
      ]
      try {
        await router.send(reply)
      } catch {
        return
      }
    }
  }
}

const zap = new ZapHandler()

/** ZAP domains registered in this process (white-box tests of bounded state). */
export function zapDomainCount(): number {
  return zap.size
}

const Z85_CHARS =
  "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

/** Z85-encodes a buffer whose length is a multiple of 4 (ZeroMQ RFC 32). */
export function z85(data: Buffer): string {
  let out = ""
  for (let i = 0; i < data.length; i += 4) {
    let value = data.readUInt32BE(i)
    const chunk: string[] = []
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85_CHARS[value % 85] as string)
      value = Math.floor(value / 85)
    }
    out += chunk.join("")
  }
  return out
}
