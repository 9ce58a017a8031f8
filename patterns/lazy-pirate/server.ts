/**
 * Lazy Pirate server: the REP side of the Guide's Lazy Pirate pattern, on a ROUTER so that
 * handlers run concurrently, with an optional reply cache so that a retried request is not
 * processed twice.
 */
import { EventEmitter, setMaxListeners } from "node:events"
import { Router } from "zeromq"
import { SocketWriter, bindRetrying } from "../../lib/writer.js"
import { encodePayload, resolveCodec, type Codec, type CodecOption } from "../../lib/codec.js"
import { debug } from "../../lib/debug.js"
import { PirateError, closedError, toError } from "../../lib/errors.js"
import { Lifecycle, type Status } from "../../lib/lifecycle.js"
import {
  LPX_ERROR,
  LPX_OK,
  decodeRequestHeader,
  decodeRequestMeta,
  encodeRemoteError,
  encodeReplyStatus,
  type RequestMeta,
} from "../../lib/protocol.js"
import { Fifo } from "../../lib/fifo.js"
import {
  assertFunction,
  assertKnownOptions,
  assertNonNegativeInt,
  assertPositiveInt,
  describe,
  endpointList,
  stripUndefined,
} from "../../lib/validate.js"
import {
  applyCurveServer,
  validateCurveServer,
  type CurveServerOptions,
} from "../../lib/security.js"

/** What a handler learns about the request besides its payload. */
export interface RequestContext {
  /** The request id of an LPX/1 framed request (the same on every retry); `undefined` for a plain one. */
  readonly id: string | undefined
  /** True for a plain single-frame request (a REP-style client such as the Guide's lpclient). */
  readonly raw: boolean
  /** Aborted when the server closes: a long handler may stop early. */
  readonly signal: AbortSignal
  /**
   * The headers of a framed request that carried a meta frame (`request(payload, { headers })`);
   * `undefined` otherwise.
   */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /**
   * The named queue a framed request asked for (`request(payload, { queue })`): a server has one
   * queue and answers it all the same; `undefined` when the request named none.
   */
  readonly queue?: string | undefined
}

/**
 * Answers one request; may be async. A thrown error becomes an error reply (`RemoteError` at the
 * client). `Req` is the request type and `Res` the reply type (both `unknown` by default): a
 * promise the caller makes, checked by nothing at runtime; validate in the handler if needed.
 */
export type RequestHandler<Req = unknown, Res = unknown> = (
  payload: Req,
  ctx: RequestContext,
) => Res | Promise<Res>

/** Reply cache settings; see {@link LazyPirateServerOptions.replyCache}. */
export interface ReplyCacheOptions {
  /** Replies remembered at most; the oldest go first. @defaultValue 1000 */
  size?: number
  /** How long a reply is remembered (ms). @defaultValue 60000 */
  ttl?: number
}

/**
 * Options of {@link LazyPirateServer}. `bind` and `handler` are required. `Req` and `Res` type
 * the handler (see {@link RequestHandler}).
 */
export interface LazyPirateServerOptions<Req = unknown, Res = unknown> {
  /** Endpoint to bind, e.g. `"tcp://*:5555"`; `"tcp://127.0.0.1:*"` picks a free port (see `endpoint`). */
  bind: string
  /** Computes the reply of a request. */
  handler: RequestHandler<Req, Res>
  /**
   * Handlers running at once. The server keeps reading while they run: retries are answered from
   * the reply cache or joined to their running request, and new requests wait their turn (see
   * `maxQueued`). @defaultValue 16
   */
  concurrency?: number
  /**
   * New requests waiting for a free handler at most; beyond it a framed request is refused at
   * once with a `PIRATE_BUSY` error reply (a plain one, which cannot carry an error, is dropped and
   * times out). Retries that join a waiting or running request do not count. @defaultValue 1000
   */
  maxQueued?: number
  /**
   * Remember replies by request id so that a retried request is answered again instead of
   * running the handler twice (and a retry of a request still running joins it). Only for
   * LPX/1 framed requests, which carry an id. `true` means `{ size: 1000, ttl: 60000 }`.
   * @defaultValue false
   */
  replyCache?: boolean | ReplyCacheOptions
  /** Payload codec: `"msgpack"`, `"raw"` (Buffers in and out) or your own. @defaultValue "msgpack" */
  codec?: CodecOption
  /** Largest request accepted (bytes); a larger one is dropped and its sender disconnected. @defaultValue 16 MiB */
  maxMessageSize?: number
  /** How long close() waits for running handlers to finish and send their replies (ms). @defaultValue 2000 */
  closeTimeout?: number
  /** CURVE encryption and authentication: this server's key pair and the clients' allowed public keys. @defaultValue off */
  curve?: CurveServerOptions
}

/** Counters of a {@link LazyPirateServer}. */
export interface LazyPirateServerStats {
  /** Well-formed requests received (retries included). */
  requests: number
  /** Replies sent (error replies and cached replies included). */
  replies: number
  /** Requests whose handler failed, or whose payload or reply the codec refused. */
  errors: number
  /** Retries answered without running the handler: from the cache, or by joining the running first try. */
  cacheHits: number
  /** Malformed messages dropped (no envelope, wrong frame count, bad LPX header). */
  dropped: number
  /** Handlers running now. */
  running: number
  /** Requests waiting for a free handler now. */
  queued: number
  /** New requests refused because `maxQueued` requests were waiting (`PIRATE_BUSY`). */
  refused: number
}

/** Events of a {@link LazyPirateServer}. */
export interface LazyPirateServerEvents {
  /** A handler failed (or the codec refused its payload or reply). `id` is `undefined` for a plain request, which gets no reply. */
  "request:error": [{ id: string | undefined; raw: boolean; error: unknown }]
  /** A malformed message was dropped. */
  "request:dropped": [{ reason: string }]
  /** The receive loop failed; the server no longer answers. */
  error: [Error]
}

export const LAZY_PIRATE_SERVER_DEFAULTS = Object.freeze({
  concurrency: 16,
  maxQueued: 1000,
  replyCache: false,
  maxMessageSize: 16 * 1024 * 1024,
  closeTimeout: 2000,
})

export const REPLY_CACHE_DEFAULTS = Object.freeze({
  size: 1000,
  ttl: 60_000,
}) satisfies Required<ReplyCacheOptions>

const SERVER_OPTIONS = {
  bind: true,
  handler: true,
  concurrency: true,
  maxQueued: true,
  replyCache: true,
  codec: true,
  maxMessageSize: true,
  closeTimeout: true,
  curve: true,
} as const satisfies Record<keyof LazyPirateServerOptions, true>

/** Replies still queued in libzmq when the socket closes get this long to leave (ms). */
const CLOSE_LINGER = 100
const STATUS_OK = encodeReplyStatus(LPX_OK)
const STATUS_ERROR = encodeReplyStatus(LPX_ERROR)

/** A request waiting for a free handler. */
interface Queued {
  envelope: Buffer[]
  id: string | undefined
  body: Buffer
  meta: RequestMeta | undefined
}

/**
 * Recent replies by request id. All entries share one ttl, so insertion order is expiry order:
 * expired entries are pruned from the front, and the oldest goes first when the cache is full.
 * Internal (not exported by the package); `now` (ms) is there for tests.
 */
export class ReplyCache {
  readonly #entries = new Map<string, { frames: Buffer[]; expires: number }>()
  readonly #size: number
  readonly #ttl: number
  readonly #now: () => number
  constructor(size: number, ttl: number, now: () => number = () => performance.now()) {
    this.#size = size
    this.#ttl = ttl
    this.#now = now
  }
  get(id: string): Buffer[] | undefined {
    const now = this.#now()
    const entry = this.#entries.get(id)
    if (entry === undefined) return undefined
    if (entry.expires > now) return entry.frames
    this.#entries.delete(id)
    return undefined
  }
  set(id: string, frames: Buffer[]): void {
    const now = this.#now()
    this.#entries.delete(id)
    this.#entries.set(id, { frames, expires: now + this.#ttl })
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= this.#size && entry.expires > now) break
      this.#entries.delete(key)
    }
  }
}

/**
 * Lazy Pirate server: binds a ROUTER and answers each request with `handler`, running up to
 * `concurrency` handlers at once.
 *
 * It answers both kinds of Lazy Pirate client: LPX/1 framed requests (`[header(id), body]`, or
 * `[header(id), body, meta]` with the request's queue and headers, shown as `ctx.queue` and
 * `ctx.headers`; from {@link LazyPirateClient} with its default codec) get `[status, body]` replies, and a handler
 * error becomes an error reply; plain single-frame requests (any REQ client, such as the Guide's
 * lpclient) get a single-frame reply, and a handler error there cannot be signalled: it is
 * counted and emitted as `request:error`, and no reply is sent (the client times out).
 *
 * `Req` is the type of the requests its handler receives and `Res` the type of its replies (both
 * `unknown` by default; see {@link RequestHandler}).
 *
 * @example
 * ```ts
 * const server = await LazyPirateServer.open<{ text: string }>({
 *   bind: "tcp://127.0.0.1:5555",
 *   handler: async (req) => ({ echo: req.text }),
 *   replyCache: { size: 1000, ttl: 60_000 },
 * })
 * // … later
 * await server.close()
 * ```
 */
export class LazyPirateServer<
  Req = unknown,
  Res = unknown,
> extends EventEmitter<LazyPirateServerEvents> {
  readonly #bind: string
  readonly #handler: RequestHandler<Req, Res>
  readonly #concurrency: number
  readonly #maxQueued: number
  readonly #codec: Codec
  readonly #maxMessageSize: number
  readonly #curve: CurveServerOptions | undefined
  #unregisterCurve: (() => void) | undefined
  readonly #closeTimeout: number
  readonly #cache: ReplyCache | undefined
  /** Envelopes waiting for the reply of a request id that is running or queued (only with the cache). */
  readonly #joined = new Map<string, Buffer[][]>()
  /** New requests waiting for a free handler, oldest first. */
  readonly #queue = new Fifo<Queued>()
  readonly #abort = new AbortController()

  readonly #life = new Lifecycle("LazyPirateServer")
  #router: Router | undefined
  /** The one writer of the socket (zeromq allows one pending send per socket). */
  #writer: SocketWriter | undefined
  #endpoint: string | undefined
  #loop: Promise<void> | undefined
  #running = 0
  /** Wakes close() when every running handler has finished. */
  #idle: (() => void) | undefined
  readonly #stats = { requests: 0, replies: 0, errors: 0, cacheHits: 0, dropped: 0, refused: 0 }

  /**
   * Validates the options; does no I/O.
   * @throws TypeError or RangeError naming the option that is wrong (an unknown one too, with the
   *   closest known name).
   */
  constructor(options: LazyPirateServerOptions<Req, Res>) {
    super()
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`'options' must be an object, got ${describe(options)}`)
    }
    assertKnownOptions("LazyPirateServer", options, SERVER_OPTIONS)
    const o = { ...LAZY_PIRATE_SERVER_DEFAULTS, ...stripUndefined(options) }
    const [bind] = endpointList("bind", o.bind)
    if (typeof o.bind !== "string" || bind === undefined) {
      throw new TypeError(`'bind' must be one endpoint, got ${describe(o.bind)}`)
    }
    assertFunction("handler", o.handler)
    assertPositiveInt("concurrency", o.concurrency)
    assertNonNegativeInt("maxQueued", o.maxQueued)
    assertPositiveInt("maxMessageSize", o.maxMessageSize)
    assertPositiveInt("closeTimeout", o.closeTimeout)
    this.#bind = bind
    this.#handler = o.handler
    this.#concurrency = o.concurrency
    this.#maxQueued = o.maxQueued
    this.#codec = resolveCodec(o.codec)
    this.#maxMessageSize = o.maxMessageSize
    this.#curve = options.curve === undefined ? undefined : validateCurveServer(options.curve)
    this.#closeTimeout = o.closeTimeout
    this.#cache = replyCache(o.replyCache)
    // Every running handler may listen to ctx.signal: up to `concurrency` listeners is no leak.
    setMaxListeners(0, this.#abort.signal)
  }

  /** `new LazyPirateServer(options)` and {@link open} in one step. */
  static async open<Req = unknown, Res = unknown>(
    options: LazyPirateServerOptions<Req, Res>,
  ): Promise<LazyPirateServer<Req, Res>> {
    const server = new LazyPirateServer<Req, Res>(options)
    await server.open()
    return server
  }

  /** `"new"` before {@link open} (and after a failed one), then `"opening"`, `"open"`, `"closing"`, `"closed"`. */
  get status(): Status {
    return this.#life.status
  }

  /**
   * The bound address, with the port resolved (`tcp://127.0.0.1:*` → `tcp://127.0.0.1:40123`).
   * @throws `PIRATE_NOT_OPEN` before {@link open} has resolved.
   */
  get endpoint(): string {
    if (this.#endpoint === undefined) {
      throw new PirateError("PIRATE_NOT_OPEN", "the server has no endpoint until open() resolves")
    }
    return this.#endpoint
  }

  /** A snapshot of the counters. */
  stats(): LazyPirateServerStats {
    return { ...this.#stats, running: this.#running, queued: this.#queue.length }
  }

  /**
   * Binds the socket and starts answering. Idempotent; a failed open may be retried.
   * @throws `PIRATE_ADDRESS_IN_USE` when `bind` is in use, another bind error of zeromq, or
   *   `PIRATE_CLOSED` after {@link close}.
   */
  open(): Promise<void> {
    return this.#life.open(() => this.#open())
  }

  /**
   * Stops answering: new requests are ignored, running handlers see `ctx.signal` abort and get up
   * to `closeTimeout` ms to finish and send their replies, then the socket closes. Idempotent.
   */
  close(): Promise<void> {
    return this.#life.close(() => this.#close())
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async #open(): Promise<void> {
    const router = new Router({ linger: 0, maxMessageSize: this.#maxMessageSize })
    try {
      if (this.#curve) this.#unregisterCurve = await applyCurveServer(router, this.#curve)
      await bindRetrying(router, this.#bind, "bind")
    } catch (err) {
      this.#unregisterCurve?.()
      this.#unregisterCurve = undefined
      router.close()
      throw err
    }
    this.#router = router
    this.#endpoint = router.lastEndpoint ?? this.#bind
    this.#writer = new SocketWriter(router, (err) => {
      // Without `mandatory` a ROUTER drops a reply to a vanished client instead of failing:
      // that is what we want for the abandoned tries of a Lazy Pirate client.
      if (!router.closed) debug("lazy pirate server: send failed: %O", err)
    })
    this.#loop = this.#receiveLoop(router).catch((err: unknown) => {
      this.emit("error", toError(err))
    })
    debug("lazy pirate server: bound %s", this.#endpoint)
  }

  /** Runs once an open in progress has settled (see `Lifecycle.close`). */
  async #close(): Promise<void> {
    const router = this.#router
    if (router === undefined) return
    this.#abort.abort(closedError("LazyPirateServer"))
    // Requests that never started are dropped: their clients retry, elsewhere if they can.
    for (const q of this.#queue.drain()) if (q.id !== undefined) this.#joined.delete(q.id)
    // Running handlers get up to closeTimeout to finish, and their replies to be written.
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<void>(
      (resolve) => (timer = setTimeout(resolve, this.#closeTimeout)),
    )
    const settled = (async () => {
      if (this.#running > 0) await new Promise<void>((resolve) => (this.#idle = resolve))
      await this.#writer?.flushed()
    })()
    await Promise.race([settled, timedOut])
    clearTimeout(timer)
    this.#idle = undefined
    router.linger = CLOSE_LINGER
    router.close()
    this.#writer?.clear()
    this.#unregisterCurve?.()
    await this.#loop
    this.#joined.clear()
  }

  async #receiveLoop(router: Router): Promise<void> {
    for (;;) {
      // Always reading, however many handlers run: a retry must reach the reply cache or its
      // running request, or its client times out although the answer is (or will be) here.
      let msg: Buffer[]
      try {
        msg = await router.receive()
      } catch (err) {
        if (this.#life.closeRequested) return
        throw err
      }
      if (!this.#life.closeRequested) this.#onMessage(msg)
    }
  }

  #onMessage(msg: Buffer[]): void {
    // [routing id, (more envelope frames,) "", body…]: a REQ client adds the empty delimiter.
    let delimiter = 1
    while (delimiter < msg.length && (msg[delimiter] as Buffer).length !== 0) delimiter++
    const bodyFrames = msg.length - delimiter - 1
    if (bodyFrames < 1 || bodyFrames > 3) {
      this.#drop(delimiter >= msg.length ? "no envelope delimiter" : `${bodyFrames} body frames`)
      return
    }
    let id: string | undefined
    if (bodyFrames >= 2) {
      const header = decodeRequestHeader(msg[delimiter + 1])
      if (header === null) {
        this.#drop(`a ${bodyFrames === 2 ? "two" : "three"}-frame request without an LPX/1 header`)
        return
      }
      id = header
    }
    const envelope = msg.slice(0, delimiter + 1)
    // [body], [header, body] or [header, body, meta]
    const body = msg[bodyFrames === 1 ? delimiter + 1 : delimiter + 2] as Buffer
    let meta: RequestMeta | undefined
    if (bodyFrames === 3) {
      try {
        meta = decodeRequestMeta(msg[delimiter + 3] as Buffer)
      } catch (err) {
        // The request names its id: it learns why it was refused instead of timing out.
        this.#stats.requests++
        this.#stats.errors++
        const code = err instanceof PirateError ? err.code : undefined
        this.#reply(envelope, [STATUS_ERROR, encodeRemoteError(err, code)])
        this.emit("request:error", { id, raw: false, error: err })
        return
      }
    }
    this.#stats.requests++
    if (id !== undefined && this.#cache) {
      const cached = this.#cache.get(id)
      if (cached) {
        this.#stats.cacheHits++
        this.#reply(envelope, cached)
        return
      }
      const joined = this.#joined.get(id)
      if (joined) {
        // The first try is running or waiting: answer this retry with it, never run twice.
        this.#stats.cacheHits++
        joined.push(envelope)
        return
      }
    }
    if (this.#running < this.#concurrency) return this.#start(envelope, id, body, meta)
    if (this.#queue.length >= this.#maxQueued) return this.#refuse(envelope, id)
    if (id !== undefined && this.#cache) this.#joined.set(id, [envelope])
    this.#queue.push({ envelope, id, body, meta })
  }

  #start(
    envelope: Buffer[],
    id: string | undefined,
    body: Buffer,
    meta: RequestMeta | undefined,
  ): void {
    if (id !== undefined && this.#cache && !this.#joined.has(id)) this.#joined.set(id, [envelope])
    this.#running++
    void this.#run(envelope, id, body, meta)
  }

  /** Too much waiting already: a framed request learns at once that it was not run. */
  #refuse(envelope: Buffer[], id: string | undefined): void {
    this.#stats.refused++
    debug("lazy pirate server: refused request %s: %d waiting", id ?? "(plain)", this.#maxQueued)
    if (id === undefined) return // no error channel: the client times out
    const busy = new PirateError(
      "PIRATE_BUSY",
      `the server is busy: ${this.#concurrency} requests running and ${this.#maxQueued} waiting; try again later`,
    )
    this.#reply(envelope, [STATUS_ERROR, encodeRemoteError(busy, busy.code)])
  }

  async #run(
    envelope: Buffer[],
    id: string | undefined,
    body: Buffer,
    meta: RequestMeta | undefined,
  ): Promise<void> {
    const raw = id === undefined
    let frames: Buffer[] | undefined
    let failed = false
    let error: unknown
    try {
      // Typed by the caller's promise only: the codec does not validate.
      const payload = this.#codec.decode(body) as Req
      const ctx: RequestContext =
        meta === undefined
          ? { id, raw, signal: this.#abort.signal }
          : { id, raw, signal: this.#abort.signal, headers: meta.headers, queue: meta.queue }
      const result: unknown = await this.#handler(payload, ctx)
      const encoded = encodePayload(this.#codec, result)
      frames = raw ? [encoded] : [STATUS_OK, encoded]
    } catch (err) {
      this.#stats.errors++
      failed = true
      error = err
      debug("lazy pirate server: request %s failed: %O", id ?? "(plain)", err)
      // A plain request has no way to carry an error: it gets no reply (its client times out).
      if (!raw) frames = [STATUS_ERROR, encodeRemoteError(err)]
    }
    this.#running--
    if (id !== undefined && this.#cache) {
      if (frames) this.#cache.set(id, frames)
      const envelopes = this.#joined.get(id) ?? [envelope]
      this.#joined.delete(id)
      if (frames) for (const env of envelopes) this.#reply(env, frames)
    } else if (frames) {
      this.#reply(envelope, frames)
    }
    const next = this.#life.closeRequested ? undefined : this.#queue.shift()
    if (next) this.#start(next.envelope, next.id, next.body, next.meta)
    this.#checkIdle()
    if (failed) this.emit("request:error", { id, raw, error })
  }

  #drop(reason: string): void {
    this.#stats.dropped++
    debug("lazy pirate server: dropped a message: %s", reason)
    this.emit("request:dropped", { reason })
  }

  #reply(envelope: Buffer[], frames: Buffer[]): void {
    if (this.#router === undefined || this.#router.closed) return
    this.#stats.replies++
    this.#writer?.write(envelope.concat(frames))
  }

  #checkIdle(): void {
    if (this.#idle && this.#running === 0) this.#idle()
  }
}

function replyCache(option: unknown): ReplyCache | undefined {
  if (option === false) return undefined
  if (option === true) return new ReplyCache(REPLY_CACHE_DEFAULTS.size, REPLY_CACHE_DEFAULTS.ttl)
  if (typeof option !== "object" || option === null || Array.isArray(option)) {
    throw new TypeError(
      `'replyCache' must be a boolean or an object such as { size: 1000, ttl: 60000 }, got ${describe(option)}`,
    )
  }
  assertKnownOptions("replyCache", option, REPLY_CACHE_DEFAULTS)
  const o = { ...REPLY_CACHE_DEFAULTS, ...stripUndefined(option as ReplyCacheOptions) }
  assertPositiveInt("replyCache.size", o.size)
  assertPositiveInt("replyCache.ttl", o.ttl)
  return new ReplyCache(o.size, o.ttl)
}
