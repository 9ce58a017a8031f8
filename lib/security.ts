/**
 * CURVE encryption and authentication (RFC 26/CurveZMQ) for every role, with an allow list of
 * client public keys enforced by a ZAP handler (RFC 27/ZAP).
 */
import { randomUUID } from "node:crypto"
import { Router, curveKeyPair, type Event, type Socket } from "zeromq"
import { debug } from "./debug.js"
import { assertKnownOptions, describe } from "./validate.js"

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
  assertKnownOptions("curve", v, { publicKey: true, secretKey: true, allow: true })
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
  assertKnownOptions("curve", v, { publicKey: true, secretKey: true, serverKey: true })
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
 * the socket closes. {@link watchRefusals} reports refused handshakes.
 */
export async function applyCurveServer(
  socket: Socket,
  curve: CurveServerOptions,
): Promise<() => void> {
  socket.curveServer = true
  socket.curveSecretKey = curve.secretKey
  socket.curvePublicKey = curve.publicKey
  if (!curve.allow) return () => undefined
  const domain = `pirate-${randomUUID()}`
  socket.zapDomain = domain
  return zap.register(domain, new Set(curve.allow))
}

/**
 * Calls `onRefused` for each connection whose security handshake this binding socket refused:
 * a peer without CURVE or with another mechanism, a CURVE peer that does not know the server's
 * key (its HELLO does not decrypt), a key the ZAP handler denied. libzmq reports each through
 * the socket's monitor; a peer that merely hangs up during the handshake is not counted. Runs
 * until the socket closes.
 */
export async function watchRefusals(
  socket: Socket,
  onRefused: (event: Event) => void,
): Promise<void> {
  const events = socket.events
  try {
    while (!events.closed) {
      const event = await events.receive()
      if (event.type === "handshake:error:protocol" || event.type === "handshake:error:auth")
        onRefused(event)
    }
  } catch {
    /* the socket was closed */
  }
}

/**
 * Why a connecting socket's security handshake failed, in words for its user, from the socket's
 * monitor event; `undefined` for any other event. `curve`: this side uses CURVE.
 */
export function handshakeRefusal(event: Event, curve: boolean): string | undefined {
  const by = "refused by the sender's CURVE policy"
  if (event.type === "handshake:error:auth") {
    const status = event.error.status
    return `${by} (ZAP status ${status}${status === 400 ? ": this public key is not allowed" : ""})`
  }
  if (event.type === "handshake:error:protocol") {
    if (event.error.code !== "ERR_ZMTP_MECHANISM_MISMATCH")
      return `${by}: the CURVE handshake failed (${event.error.code})`
    return curve
      ? "the handshake failed: the sender does not use CURVE"
      : `${by}: it requires CURVE (set the 'curve' option)`
  }
  // A CURVE server that cannot read our HELLO (a wrong server key) just hangs up.
  if (event.type === "handshake:error:other" && curve)
    return `${by}, or a wrong serverKey: the sender closed the connection during the CURVE handshake`
  return undefined
}

/**
 * The process's ZAP handler: one ROUTER on `inproc://zeromq.zap.01` (one per ZeroMQ context), shared
 * by every CURVE server of this library, each under its own ZAP domain. Unknown domains (sockets
 * that are not ours) are allowed, so the handler never changes how other sockets authenticate.
 */
class ZapHandler {
  readonly #domains = new Map<string, Set<string>>()
  #router: Router | undefined
  #starting: Promise<void> | undefined

  /** Domains registered (tests: a closed or failed server leaves none behind). */
  get size(): number {
    return this.#domains.size
  }

  async register(domain: string, allow: Set<string>): Promise<() => void> {
    this.#domains.set(domain, allow)
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
      const allow = this.#domains.get(domain)
      let allowed = true
      let key = ""
      if (allow) {
        key = credential && credential.length === 32 ? z85(credential) : ""
        allowed = mechanism?.toString() === "CURVE" && allow.has(key)
        if (!allowed) debug("zap: denied %s from %s", key || "(no key)", address?.toString() ?? "?")
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
