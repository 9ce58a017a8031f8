/**
 * Lazy Pirate client (ZeroMQ Guide, chapter 4, "Client-Side Reliability"): a request with a
 * timeout, resent from a fresh socket after each timeout, failing over between endpoints, and
 * giving up with a clear error after the last try.
 */
import { randomBytes } from "node:crypto"
import { EventEmitter } from "node:events"
import { Request } from "zeromq"
import { encodePayload, resolveCodec, type Codec, type CodecOption } from "../../lib/codec.js"
import { debug } from "../../lib/debug.js"
import {
  PirateError,
  RemoteError,
  RequestTimeoutError,
  abortedError,
  closedError,
  toError,
} from "../../lib/errors.js"
import { Lifecycle, type Status } from "../../lib/lifecycle.js"
import {
  LPX_ERROR,
  LPX_OK,
  decodeRemoteError,
  decodeReplyStatus,
  encodeRequestHeader,
  encodeRequestMeta,
} from "../../lib/protocol.js"
import { checkHeaders, checkQueueName } from "../../lib/headers.js"
import {
  assertKnownOptions,
  assertPositiveInt,
  describe,
  endpointList,
  stripUndefined,
} from "../../lib/validate.js"
import {
  applyCurveClient,
  validateCurveClient,
  type CurveClientOptions,
} from "../../lib/security.js"

/** Options of {@link LazyPirateClient}. `connect` is required; every other field is optional. */
export interface LazyPirateClientOptions {
  /** Endpoint of the server, or several: the client fails over to the next one on each timeout. */
  connect: string | readonly string[]
  /** How long one try waits for its reply (ms). @defaultValue 2500 */
  timeout?: number
  /** Tries in all (the first one included), as `REQUEST_RETRIES` in the Guide's lpclient. @defaultValue 3 */
  retries?: number
  /** Payload codec: `"msgpack"`, `"raw"` (Buffers and strings in, Buffers out) or your own. @defaultValue "msgpack" */
  codec?: CodecOption
  /**
   * Send LPX/1 framed requests (`[header(requestId), body]`, replies `[status, body]`). Plain
   * requests are one frame and work against any REP server, but carry no request id (no
   * server-side deduplication) and cannot carry a remote error.
   * @defaultValue `true`, except with `codec: "raw"`
   */
  framed?: boolean
  /** Requests in flight at once, one socket each; further requests wait their turn. @defaultValue 16 */
  concurrency?: number
  /** Largest reply accepted (bytes); a larger one is dropped by the socket. @defaultValue 16 MiB */
  maxMessageSize?: number
  /** CURVE encryption and authentication: this client's key pair and the server's public key. @defaultValue off */
  curve?: CurveClientOptions
}

/** Options of one {@link LazyPirateClient.request} call. */
export interface RequestOptions {
  /** Timeout of each try (ms). @defaultValue the client's `timeout` */
  timeout?: number
  /** Tries in all. @defaultValue the client's `retries` */
  retries?: number
  /** Aborts the request: it rejects with `PIRATE_ABORTED` (`cause` is `signal.reason`). */
  signal?: AbortSignal
  /**
   * The named queue of a `ParanoidPirateQueue` the request goes to (a plain server ignores it);
   * sent in the request's LPX/1 meta frame, so framed requests only. @defaultValue the queue's
   * `"default"`
   */
  queue?: string
  /**
   * Headers the request carries (a string → string map), delivered to a queue's worker as
   * `ctx.headers` and to a `LazyPirateServer` handler as `ctx.headers`; framed requests only.
   */
  headers?: Readonly<Record<string, string>>
}

/** Counters of a {@link LazyPirateClient}. */
export interface LazyPirateClientStats {
  /** Requests started. */
  requests: number
  /** Requests answered (an LPX error reply counts: it is an answer). */
  replies: number
  /** Tries that timed out and were resent. */
  retries: number
  /** Requests that gave up with `PIRATE_TIMEOUT`. */
  timeouts: number
  /** Times the client moved on to the next endpoint. */
  failovers: number
  /** Requests waiting for a reply now. */
  inFlight: number
  /** Requests waiting for their turn (beyond `concurrency`). */
  queued: number
}

/** Events of a {@link LazyPirateClient}. */
export interface LazyPirateClientEvents {
  /** A try timed out; the request is resent (`attempt` is the new try's number) to `endpoint`. */
  "request:retry": [{ id: string; attempt: number; endpoint: string; previousEndpoint: string }]
  /** The client gave up on `from` after a timeout and sends to `to` from now on. */
  "endpoint:failover": [{ from: string; to: string }]
}

export const LAZY_PIRATE_CLIENT_DEFAULTS = Object.freeze({
  timeout: 2500,
  retries: 3,
  concurrency: 16,
  maxMessageSize: 16 * 1024 * 1024,
})

const CLIENT_OPTIONS = {
  connect: true,
  timeout: true,
  retries: true,
  codec: true,
  framed: true,
  concurrency: true,
  maxMessageSize: true,
  curve: true,
} as const satisfies Record<keyof LazyPirateClientOptions, true>

const REQUEST_OPTIONS = {
  timeout: true,
  retries: true,
  signal: true,
  queue: true,
  headers: true,
} as const satisfies Record<keyof RequestOptions, true>

/** Largest delay `setTimeout` accepts. */
const MAX_TIMEOUT = 2 ** 31 - 1

/** One request in progress: what close() and abort need to reach it. */
interface Call {
  sock: Request | undefined
  timer: NodeJS.Timeout | undefined
  timedOut: boolean
  /** Set by close() or abort: the error the request rejects with. */
  error: PirateError | undefined
  /** Set while the call waits for a free slot. */
  waiter: Waiter | undefined
}

interface Waiter {
  resolve: () => void
  reject: (err: unknown) => void
}

interface Pooled {
  sock: Request
  endpoint: number
}

/**
 * Lazy Pirate client: request → reply with a timeout and retries.
 *
 * Each try that times out discards its REQ socket (linger 0) and resends from a fresh one, so a
 * late reply to an abandoned try can never be taken for the answer to a newer request. With
 * several endpoints the client moves on to the next one after each timeout. After the last try
 * the request rejects with a {@link RequestTimeoutError}. Concurrent requests each use their own
 * socket (up to `concurrency`); sockets are reused between requests as long as no timeout
 * occurred.
 *
 * `Req` is the type of the requests it sends and `Res` the type of the replies `request()`
 * resolves with (both `unknown` by default): a promise the caller makes, not checked at runtime.
 *
 * @example
 * ```ts
 * const client = new LazyPirateClient<{ op: string; a: number; b: number }, number>({
 *   connect: "tcp://127.0.0.1:5555",
 *   timeout: 2500,
 *   retries: 3,
 * })
 * const sum = await client.request({ op: "add", a: 1, b: 2 }) // a number
 * await client.close()
 * ```
 */
export class LazyPirateClient<
  Req = unknown,
  Res = unknown,
> extends EventEmitter<LazyPirateClientEvents> {
  /** The endpoints, in failover order. */
  readonly endpoints: readonly string[]
  readonly #timeout: number
  readonly #retries: number
  readonly #codec: Codec
  readonly #framed: boolean
  readonly #concurrency: number
  readonly #maxMessageSize: number
  readonly #curve: CurveClientOptions | undefined

  readonly #life = new Lifecycle("LazyPirateClient")
  /** Index of the endpoint new tries go to. */
  #current = 0
  readonly #idle: Pooled[] = []
  readonly #calls = new Set<Call>()
  readonly #queue: Waiter[] = []
  #inFlight = 0
  readonly #idPrefix = `${randomBytes(6).toString("base64url")}.`
  #idCounter = 0
  readonly #stats = { requests: 0, replies: 0, retries: 0, timeouts: 0, failovers: 0 }

  /**
   * Validates the options; does no I/O (the first request, or {@link open}, connects).
   * @throws TypeError or RangeError naming the option that is wrong (an unknown one too, with the
   *   closest known name).
   */
  constructor(options: LazyPirateClientOptions) {
    super()
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`'options' must be an object, got ${describe(options)}`)
    }
    assertKnownOptions("LazyPirateClient", options, CLIENT_OPTIONS)
    const o = { ...LAZY_PIRATE_CLIENT_DEFAULTS, ...stripUndefined(options) }
    this.endpoints = Object.freeze([...endpointList("connect", o.connect)])
    for (const ep of this.endpoints) {
      // zmq_connect() would throw EINVAL later: say it now, naming the option.
      if (ep.startsWith("tcp://") && !/:\d{1,5}$/.test(ep)) {
        throw new TypeError(`'connect' endpoints need a port, as in "tcp://host:5555", got "${ep}"`)
      }
    }
    assertTimeout("timeout", o.timeout)
    assertPositiveInt("retries", o.retries)
    assertPositiveInt("concurrency", o.concurrency)
    assertPositiveInt("maxMessageSize", o.maxMessageSize)
    this.#codec = resolveCodec(o.codec)
    const framed = o.framed ?? o.codec !== "raw"
    if (typeof framed !== "boolean") {
      throw new TypeError(`'framed' must be a boolean, got ${describe(framed)}`)
    }
    this.#timeout = o.timeout
    this.#retries = o.retries
    this.#framed = framed
    this.#concurrency = o.concurrency
    this.#maxMessageSize = o.maxMessageSize
    this.#curve = options.curve === undefined ? undefined : validateCurveClient(options.curve)
  }

  /** `new LazyPirateClient(options)` and {@link open} in one step. */
  static async open<Req = unknown, Res = unknown>(
    options: LazyPirateClientOptions,
  ): Promise<LazyPirateClient<Req, Res>> {
    const client = new LazyPirateClient<Req, Res>(options)
    await client.open()
    return client
  }

  /** `"new"` before {@link open} (the first request opens it), then `"opening"`, `"open"`, `"closing"`, `"closed"`. */
  get status(): Status {
    return this.#life.status
  }

  /** The endpoint new tries go to (it changes on failover). */
  get endpoint(): string {
    return this.endpoints[this.#current] as string
  }

  /** A snapshot of the counters. */
  stats(): LazyPirateClientStats {
    return { ...this.#stats, inFlight: this.#inFlight, queued: this.#queue.length }
  }

  /**
   * Starts connecting to the first endpoint. Never waits for the server to exist. Idempotent;
   * optional, since the first {@link request} opens the client.
   * @throws `PIRATE_CLOSED` when the client was closed.
   */
  open(): Promise<void> {
    return this.#life.open(() => {
      // Connect one socket now so that the connection is up when the first request comes.
      this.#idle.push({ sock: this.#newSocket(this.#current), endpoint: this.#current })
      return Promise.resolve()
    })
  }

  /** Stops the client: pending and queued requests reject with `PIRATE_CLOSED`. Idempotent. */
  close(): Promise<void> {
    return this.#life.close(() => {
      const err = closedError("LazyPirateClient")
      for (const call of this.#calls) this.#cancel(call, err)
      for (const { sock } of this.#idle.splice(0)) sock.close()
      return Promise.resolve()
    })
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /**
   * Sends `payload` and resolves with the reply. After a try with no reply within `timeout`,
   * resends it from a fresh socket (to the next endpoint when there are several), up to
   * `retries` tries in all. Every try of one request carries the same request id, so a server
   * with a reply cache answers a retry without running its handler twice.
   *
   * @param payload - any msgpack-encodable value (a Buffer or string with `codec: "raw"`).
   * @returns the decoded reply (a Buffer with `codec: "raw"`).
   * @throws TypeError or RangeError (synchronously) for wrong options.
   * @throws `PIRATE_ENCODE` when the codec cannot encode `payload` (a circular reference, a
   *   symbol, a non-Buffer with `codec: "raw"`…; `cause` is the codec's error),
   *   `PIRATE_TIMEOUT` ({@link RequestTimeoutError}) when no try got a reply,
   *   `PIRATE_REMOTE` ({@link RemoteError}) when the server's handler failed,
   *   `PIRATE_BUSY` when the server refused the request unrun (too many waiting: try later),
   *   `PIRATE_ABORTED` when `signal` fired, `PIRATE_CLOSED` when the client is (or gets) closed,
   *   `PIRATE_DECODE` when the reply cannot be decoded, `PIRATE_PROTOCOL` when a framed request
   *   got a reply that is not LPX/1 (the server is a plain REP server: use `codec: "raw"`) or
   *   the server could not read the request's meta frame (`queue`, `headers`).
   *
   * @example
   * ```ts
   * const reply = await client.request("ping", { timeout: 500, signal: AbortSignal.timeout(5000) })
   * ```
   */
  request(payload: Req, options: RequestOptions = {}): Promise<Res> {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`'options' must be an object, got ${describe(options)}`)
    }
    assertKnownOptions("request()", options, REQUEST_OPTIONS)
    const timeout = options.timeout ?? this.#timeout
    const tries = options.retries ?? this.#retries
    assertTimeout("timeout", timeout)
    assertPositiveInt("retries", tries)
    const signal = options.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(`'signal' must be an AbortSignal, got ${describe(signal)}`)
    }
    const meta = requestMeta(options, this.#framed)
    if (this.#life.closeRequested) return Promise.reject(closedError("LazyPirateClient"))
    let body: Buffer
    try {
      body = encodePayload(this.#codec, payload)
    } catch (err) {
      return Promise.reject(toError(err))
    }
    if (signal?.aborted) return Promise.reject(abortedError(signal))
    // The reply's type is the caller's promise: nothing checks the decoded value against it.
    return this.#request(body, meta, timeout, tries, signal) as Promise<Res>
  }

  async #request(
    body: Buffer,
    meta: Buffer | undefined,
    timeout: number,
    tries: number,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    const call: Call = {
      sock: undefined,
      timer: undefined,
      timedOut: false,
      error: undefined,
      waiter: undefined,
    }
    this.#calls.add(call)
    const onAbort =
      signal === undefined ? undefined : () => this.#cancel(call, abortedError(signal))
    if (onAbort) signal?.addEventListener("abort", onAbort, { once: true })
    this.#stats.requests++
    try {
      // Take a slot (or a place in the queue) before anything else awaits: first come, first served.
      if (this.#inFlight < this.#concurrency) this.#inFlight++
      else await this.#waitForSlot(call)
      try {
        if (this.#life.status !== "open") await this.open()
        return await this.#tries(call, body, meta, timeout, tries)
      } finally {
        this.#releaseSlot()
      }
    } finally {
      this.#calls.delete(call)
      if (onAbort) signal?.removeEventListener("abort", onAbort)
    }
  }

  async #tries(
    call: Call,
    body: Buffer,
    meta: Buffer | undefined,
    timeout: number,
    tries: number,
  ): Promise<unknown> {
    const id = this.#idPrefix + (this.#idCounter++).toString(36)
    // The same frames (and so the same request id) on every try: the server can deduplicate.
    const frames = !this.#framed
      ? [body]
      : meta === undefined
        ? [encodeRequestHeader(id), body]
        : [encodeRequestHeader(id), body, meta]
    const tried: string[] = [] // endpoints whose tries timed out, for the give-up message
    for (let attempt = 1; ; attempt++) {
      const cancelled = cancellation(call)
      if (cancelled) throw cancelled
      const index = this.#current
      const endpoint = this.endpoints[index] as string
      const sock = this.#take(index)
      call.sock = sock
      call.timedOut = false
      call.timer = setTimeout(this.#onTimeout, timeout, call)
      let reply: Buffer[]
      try {
        await sock.send(frames)
        reply = await sock.receive()
      } catch (err) {
        clearTimeout(call.timer)
        call.sock = undefined
        sock.close()
        const stopped = cancellation(call)
        if (stopped) throw stopped
        if (!call.timedOut) throw err
        debug("lazy pirate: request %s try %d on %s timed out", id, attempt, endpoint)
        if (!tried.includes(endpoint)) tried.push(endpoint)
        if (attempt >= tries) {
          this.#stats.timeouts++
          throw new RequestTimeoutError(tried, attempt, timeout)
        }
        this.#failover(index)
        this.#stats.retries++
        this.emit("request:retry", {
          id,
          attempt: attempt + 1,
          endpoint: this.endpoint,
          previousEndpoint: endpoint,
        })
        continue
      }
      clearTimeout(call.timer)
      call.sock = undefined
      // The timer may have closed the socket after the reply was read: the reply still answers
      // this try (the socket was fresh), but the socket cannot be reused.
      const stopped = cancellation(call)
      if (stopped) throw stopped
      if (call.timedOut || this.#life.closeRequested) sock.close()
      else this.#idle.push({ sock, endpoint: index })
      this.#stats.replies++
      return this.#parse(reply, endpoint)
    }
  }

  /** The timer of a try: discarding the socket is the only way to end its pending receive(). */
  readonly #onTimeout = (call: Call): void => {
    call.timedOut = true
    call.sock?.close()
  }

  #cancel(call: Call, err: PirateError): void {
    call.error ??= err
    if (call.waiter) {
      const i = this.#queue.indexOf(call.waiter)
      if (i >= 0) this.#queue.splice(i, 1)
      call.waiter.reject(call.error)
      call.waiter = undefined
    }
    clearTimeout(call.timer)
    call.sock?.close()
  }

  #waitForSlot(call: Call): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => {
          call.waiter = undefined
          resolve()
        },
        reject,
      }
      call.waiter = waiter
      this.#queue.push(waiter)
    })
  }

  /** Hands the slot to the next waiting request, if any. */
  #releaseSlot(): void {
    const next = this.#queue.shift()
    if (next) next.resolve()
    else this.#inFlight--
  }

  /** After a timeout on `index`: move on to the next endpoint (unless another request already did). */
  #failover(index: number): void {
    if (this.endpoints.length < 2 || this.#current !== index) return
    this.#current = (index + 1) % this.endpoints.length
    this.#stats.failovers++
    const from = this.endpoints[index] as string
    debug("lazy pirate: failing over from %s to %s", from, this.endpoint)
    this.emit("endpoint:failover", { from, to: this.endpoint })
  }

  /** An idle socket connected to endpoint `index`, or a new one. */
  #take(index: number): Request {
    for (let pooled = this.#idle.pop(); pooled; pooled = this.#idle.pop()) {
      if (pooled.endpoint === index) return pooled.sock
      pooled.sock.close()
    }
    return this.#newSocket(index)
  }

  #newSocket(index: number): Request {
    // linger 0: a discarded socket must drop its unanswered request at once.
    const sock = new Request({ linger: 0, maxMessageSize: this.#maxMessageSize })
    if (this.#curve) applyCurveClient(sock, this.#curve)
    try {
      sock.connect(this.endpoints[index] as string)
    } catch (err) {
      sock.close()
      throw err
    }
    return sock
  }

  #parse(reply: Buffer[], endpoint: string): unknown {
    if (!this.#framed) return this.#codec.decode(reply[0] ?? Buffer.alloc(0))
    const status = decodeReplyStatus(reply[0])
    if (status === LPX_OK && reply.length === 2) return this.#codec.decode(reply[1] as Buffer)
    if (status === LPX_ERROR) {
      const remote = decodeRemoteError(reply[1])
      // The server refused the request without running it: not the handler's failure.
      if (remote.code === "PIRATE_BUSY") throw new PirateError("PIRATE_BUSY", remote.message)
      // The server could not read the request (e.g. its meta frame): not the handler's failure.
      if (remote.code === "PIRATE_PROTOCOL")
        throw new PirateError(
          "PIRATE_PROTOCOL",
          `${endpoint} refused the request: ${remote.message}`,
        )
      throw new RemoteError(remote.message, remote.name)
    }
    throw new PirateError(
      "PIRATE_PROTOCOL",
      `the reply from ${endpoint} is not LPX/1 framed (${reply.length} frames); for a plain REP server use codec: "raw" or framed: false`,
    )
  }
}

/**
 * The error close() or abort set on a call. A function, not `call.error`: TypeScript keeps a
 * narrowing of `call.error` across the awaits during which close() or abort may set it.
 */
function cancellation(call: Call): PirateError | undefined {
  return call.error
}

/**
 * The meta frame of a request with `queue` or `headers`, checked; undefined without them.
 * @throws TypeError or RangeError naming the option (also for either on an unframed client)
 */
function requestMeta(options: RequestOptions, framed: boolean): Buffer | undefined {
  const { queue, headers } = options
  if (queue === undefined && headers === undefined) return undefined
  if (!framed)
    throw new TypeError(
      `'${queue === undefined ? "headers" : "queue"}' needs LPX/1 framed requests: leave 'framed' (and a codec other than "raw") at its default, or set framed: true`,
    )
  return encodeRequestMeta({
    queue: queue === undefined ? undefined : checkQueueName(queue),
    headers: headers === undefined ? undefined : checkHeaders(headers),
  })
}

function assertTimeout(name: string, value: unknown): asserts value is number {
  assertPositiveInt(name, value)
  if (value > MAX_TIMEOUT) {
    throw new RangeError(`'${name}' must be at most ${MAX_TIMEOUT} ms, got ${value}`)
  }
}
