/**
 * A worker's jobs: the tasks its sessions received, run with bounded concurrency (the rest wait
 * in a queue), each decoded, handed to the handler and answered: an ack with the handler's
 * result, a nack with its error (with a delay for a `RetryError` or `ctx.retry()`, a reject for
 * an `UnrecoverableError` or `ctx.term()`), or nothing when the session that brought it is gone.
 */
import { joinBody } from "../../lib/body.js"
import {
  decodeRange,
  encodePayload,
  encodeReply,
  msgpackCodec,
  rawCodec,
  type Codec,
} from "../../lib/codec.js"
import {
  RetryError,
  UnrecoverableError,
  errorMessage,
  toError,
  tooLargeError,
} from "../../lib/errors.js"
import type { LatencyHistogram } from "../../lib/metrics.js"
import {
  FRAME_EMPTY,
  FRAME_EXTEND,
  decodeEnvelope,
  decodeEnvelopeAt,
  encodeNack,
  type NackInfo,
  type TaskMeta,
} from "../../lib/protocol.js"
import { describe } from "../../lib/validate.js"
import type { DedupeRuns } from "./worker-dedupe.js"
import type { JobContext, JobHandler, WorkerEvents, WorkerSettings } from "./worker-options.js"
import { NO_HEADERS, envelopeOf, type Job, type Session } from "./worker-session.js"
import { DEFAULT_QUEUE } from "../../lib/headers.js"
import { runInConsumerSpan, wantsConsumerSpan, type ConsumerSpanInfo } from "../../lib/trace.js"

/** What the consumer span of a job's handler call names (see lib/trace.ts). */
function traceInfo(job: Job, senderId: string | undefined): ConsumerSpanInfo {
  return { queue: job.queue, id: job.id, attempt: job.attempt, headers: job.headers, senderId }
}

/** The counters of `WorkerStats` that jobs move. */
export interface JobCounters {
  received: number
  acked: number
  nacked: number
  discarded: number
  deduplicated: number
}

/** What the jobs need of their worker. */
export interface JobsHost {
  readonly handler: JobHandler
  readonly codec: Codec
  readonly settings: WorkerSettings
  readonly stats: JobCounters
  readonly dedupe: DedupeRuns | undefined
  readonly latency: LatencyHistogram
  /** True, with the session lost, when its sender has given up on it (see `Worker`). */
  expired(s: Session): boolean
  /** No job runs any more (a closing worker may finish). */
  idle(): void
  emit<K extends keyof WorkerEvents>(event: K, ...args: WorkerEvents[K]): boolean
}

/**
 * A job's own decision, taken by `ctx.retry()` or `ctx.term()` while its handler runs and applied
 * when the handler ends, whatever it returns or throws then: the first decision wins. One taken
 * after the handler ended is never read.
 */
interface Control {
  decision: RetryError | UnrecoverableError | undefined
}

/** Records `decision` for the job unless it has one. */
function decide(control: Control, decision: RetryError | UnrecoverableError): void {
  control.decision ??= decision
}

/** `ctx.retry(options)`'s decision, its arguments checked. */
function retryDecision(options: unknown): RetryError {
  if (options === undefined) return new RetryError()
  if (typeof options !== "object" || options === null || Array.isArray(options))
    throw new TypeError(`ctx.retry()'s options must be an object, got ${describe(options)}`)
  const { delay, reason } = options as { delay?: unknown; reason?: unknown }
  if (reason !== undefined && typeof reason !== "string")
    throw new TypeError(`'reason' must be a string, got ${describe(reason)}`)
  // RetryError checks `delay` (TypeError or RangeError naming it).
  return new RetryError(reason, delay === undefined ? {} : { delay: delay as number })
}

/** `ctx.term(reason)`'s decision, its argument checked. */
function termDecision(reason: unknown): UnrecoverableError {
  if (reason !== undefined && typeof reason !== "string")
    throw new TypeError(`'reason' must be a string, got ${describe(reason)}`)
  return new UnrecoverableError(reason)
}

export class Jobs {
  readonly #h: JobsHost
  #queue: Job[] = []
  #running = 0
  /** `#next()` is starting queued jobs (a job that ends inside it does not start another loop). */
  #starting = false

  constructor(host: JobsHost) {
    this.#h = host
  }

  /** Handlers running now. */
  get running(): number {
    return this.#running
  }

  /** Jobs waiting for a free handler slot. */
  get queued(): number {
    return this.#queue.length
  }

  /** Drops the jobs of session `s` that have not started (its sender gives them to others). */
  dropQueued(s: Session): void {
    const before = this.#queue.length
    this.#queue = this.#queue.filter((j) => j.session !== s)
    this.#h.stats.discarded += before - this.#queue.length
  }

  /** Drops every job that has not started (the worker has closed). */
  clear(): void {
    this.#queue = []
  }

  /** A task: its envelope and body as in {@link Job} (records of a TASKS frame, or whole). */
  accept(
    s: Session,
    envelopes: Buffer,
    envelopeAt: number,
    body: Buffer,
    bodyAt: number,
    ppx: boolean,
    meta?: TaskMeta,
  ): void {
    this.#h.stats.received++
    const start = envelopeAt + 1
    const end = envelopeAt < 0 ? envelopes.length : start + (envelopes[envelopeAt] as number)
    const env = envelopeAt < 0 ? decodeEnvelope(envelopes) : decodeEnvelopeAt(envelopes, start, end)
    const job: Job = {
      session: s,
      generation: s.generation,
      // The received frames, as they are: they live as long as the job.
      envelopes,
      envelopeAt,
      body,
      bodyAt,
      id: env?.id ?? envelopes.toString("hex", start, end),
      attempt: env?.attempt ?? 1,
      ppx,
      ours: env !== null,
      queue: meta?.queue ?? DEFAULT_QUEUE,
      headers: meta?.headers ?? NO_HEADERS,
    }
    if (!ppx) s.plainJobs++
    if (this.#running < this.#h.settings.concurrency) this.#run(job)
    else this.#queue.push(job)
  }

  #run(job: Job): void {
    this.#running++
    const s = job.session
    if (job.ppx && s.reportStarts && s.generation === job.generation) {
      // The sender's ack deadline for this task runs from now (it may have waited here).
      s.started(job)
    }
    let pending: Promise<void> | undefined
    try {
      pending = this.#execute(job)
    } catch (err) {
      pending = Promise.reject(toError(err))
    }
    // A handler that answered at once (no promise) is done here: no promise chain per job.
    if (pending === undefined) {
      this.#ended(job)
      return
    }
    pending
      .catch((err: unknown) => this.#h.emit("error", toError(err)))
      .finally(() => this.#ended(job))
  }

  /** A job ended: its slot goes to the next queued job, if any. */
  #ended(job: Job): void {
    this.#running--
    if (!job.ppx && job.session.generation === job.generation) job.session.plainJobs--
    this.#next()
  }

  /**
   * Starts queued jobs while there is room. A job that ends at once starts the next one from this
   * loop, not from a nested call, so a long queue of quick jobs never grows the stack.
   */
  #next(): void {
    if (this.#starting) return
    this.#starting = true
    try {
      while (this.#running < this.#h.settings.concurrency) {
        const next = this.#queue.shift()
        if (!next) break
        this.#run(next)
      }
    } finally {
      this.#starting = false
    }
    if (this.#running === 0) this.#h.idle()
  }

  /**
   * Decodes the payload and runs the handler. Returns a promise only when the job has to wait (a
   * handler that returned a promise, the dedupe store); a handler that returned its reply at
   * once is acked (or nacked) before this returns.
   */
  #execute(job: Job): Promise<void> | undefined {
    const s = job.session
    let payload: unknown
    try {
      const { body, bodyAt } = job
      payload =
        bodyAt >= 0
          ? decodeRange(this.#h.codec, body, bodyAt + 4, bodyAt + 4 + body.readUInt32BE(bodyAt))
          : // The built-in codecs decode a split body themselves; another codec gets it whole.
            this.#h.codec.decode(
              this.#h.codec === msgpackCodec || this.#h.codec === rawCodec ? body : joinBody(body),
            )
    } catch (err) {
      // Retrying cannot help: reject to the dead letters with the decode error.
      this.#h.stats.nacked++
      this.#nack(job, errorMessage(err), true)
      return undefined
    }
    const control: Control = { decision: undefined }
    const ctx: JobContext = {
      id: job.id,
      attempt: job.attempt,
      endpoint: s.endpoint,
      queue: job.queue,
      headers: job.headers,
      signal: s.abort.signal,
      extend: () => {
        if (job.ppx && s.generation === job.generation)
          s.writer?.write([FRAME_EXTEND, envelopeOf(job)])
      },
      retry: (options) => decide(control, retryDecision(options)),
      term: (reason) => decide(control, termDecision(reason)),
    }
    if (this.#h.dedupe && job.ours)
      return this.#completeDeduped(this.#h.dedupe, job, payload, ctx, control)
    const t0 = performance.now()
    let result: unknown
    try {
      result = this.#call(job, payload, ctx)
    } catch (err) {
      this.#failed(job, toError(err), errorMessage(err), control)
      return undefined
    }
    if (isThenable(result)) return this.#completeLater(job, result, t0, control)
    this.#answer(job, result, t0, control)
    return undefined
  }

  /** The handler returned a promise: ack with what it resolves to, nack if it rejects. */
  async #completeLater(
    job: Job,
    result: PromiseLike<unknown>,
    t0: number,
    control: Control,
  ): Promise<void> {
    let value: unknown
    try {
      value = await result
    } catch (err) {
      this.#failed(job, toError(err), errorMessage(err), control)
      return
    }
    this.#answer(job, value, t0, control)
  }

  /**
   * The handler (started at `t0`) returned `value`: ack with it, or nack if it cannot be encoded
   * or the handler decided so (`ctx.retry()`, `ctx.term()`).
   */
  #answer(job: Job, value: unknown, t0: number, control: Control): void {
    if (control.decision) {
      this.#failed(job, control.decision, control.decision.message, control)
      return
    }
    let reply: Buffer
    try {
      reply = encodeReply(this.#h.codec, value)
    } catch (err) {
      this.#failed(job, toError(err), errorMessage(err))
      return
    }
    const t1 = performance.now()
    this.#h.latency.record(t1 - t0)
    this.#reply(job, reply, t1)
  }

  /** With `dedupe`: runs the handler, or answers from the store when this message already completed here. */
  async #completeDeduped(
    dedupe: DedupeRuns,
    job: Job,
    payload: unknown,
    ctx: JobContext,
    control: Control,
  ): Promise<void> {
    // Ids are unique per sender: key on the identity it announced in WELCOME, so that any
    // address of the same sender finds its records and two senders never share one. A sender
    // that announced none (plain PPP, a foreign queue) is told apart by its endpoint.
    const s = job.session
    const sender = s.generation === job.generation ? s.sender : undefined
    const key = sender === undefined ? `${s.endpoint}|${job.id}` : `sender:${sender}|${job.id}`
    let reply: Buffer
    try {
      reply = await dedupe.complete(
        key,
        () => this.#handle(job, payload, ctx, control),
        () => this.#h.stats.deduplicated++,
      )
    } catch (err) {
      this.#failed(job, toError(err), errorMessage(err), control)
      return
    }
    this.#reply(job, reply, performance.now())
  }

  /** Sends the reply of a job that succeeded (at `now`, a `performance.now()`): its ack. */
  #reply(job: Job, reply: Buffer, now: number): void {
    const s = job.session
    if (job.ppx && reply.length + 4 > s.senderMax) {
      // Sent, it would make the sender's socket drop the connection and with it everything else
      // in flight here: a nack of this message alone instead.
      const error = tooLargeError("the reply for the sender", reply.length, s.senderMax)
      this.#failed(job, error, `${error.code}: ${error.message}`)
      return
    }
    // A job that ends as this process wakes from a freeze must not count an ack nobody takes.
    // (The session cannot have expired yet while less than its expiry passed since it last
    // received: `heardAt` is never later than the liveness's own record of that.)
    const mayExpire = now - s.heardAt >= s.liveness.expiry
    if ((mayExpire && this.#h.expired(s)) || s.generation !== job.generation) {
      this.#h.stats.discarded++
      return
    }
    this.#h.stats.acked++
    if (!job.ppx) {
      s.writer?.write([job.envelopes, FRAME_EMPTY, reply])
      s.liveness.sent()
      return
    }
    s.ack(job, reply, this.#h.settings.maxBatch)
  }

  /**
   * The handler failed (or its reply cannot be sent): nack. The job's own decision, when it took
   * one, stands instead of `error`: a `RetryError` nacks with its delay, an `UnrecoverableError`
   * rejects (a dead letter now); any other error nacks for the sender's backoff.
   */
  #failed(job: Job, error: Error, reason: string, control?: Control): void {
    const decided = control?.decision
    const err: Error = decided ?? error
    const why = decided ? decided.message : reason
    this.#h.stats.nacked++
    this.#h.emit("job:failed", { id: job.id, attempt: job.attempt, error: err })
    if (err instanceof UnrecoverableError) this.#nack(job, why, true)
    else this.#nack(job, why, false, err instanceof RetryError ? err.delay : undefined)
  }

  /**
   * Calls the handler; with `@opentelemetry/api` installed, inside a consumer span whose parent is
   * the trace context the message carries (see lib/trace.ts).
   */
  #call(job: Job, payload: unknown, ctx: JobContext): unknown {
    if (!wantsConsumerSpan(job.headers)) return this.#h.handler(payload, ctx)
    const s = job.session
    const sender = s.generation === job.generation ? s.sender : undefined
    return runInConsumerSpan(traceInfo(job, sender), () =>
      Promise.resolve(this.#h.handler(payload, ctx)),
    )
  }

  /** Runs the handler for the dedupe store, which keeps its encoded reply (not when it decided to nack). */
  async #handle(job: Job, payload: unknown, ctx: JobContext, control: Control): Promise<Buffer> {
    const t0 = performance.now()
    const value: unknown = await this.#call(job, payload, ctx)
    // Thrown, so that the store records nothing: the message is not complete.
    if (control.decision) throw control.decision
    const reply = encodePayload(this.#h.codec, value)
    this.#h.latency.record(performance.now() - t0)
    return reply
  }

  /**
   * Nacks a job: `reject` dead-letters it now; otherwise the sender retries it after `delay` (ms)
   * or, without one, after its retry backoff.
   */
  #nack(job: Job, error: string, reject: boolean, delay?: number): void {
    const s = job.session
    if (this.#h.expired(s) || s.generation !== job.generation) {
      this.#h.stats.discarded++
      return
    }
    // A plain PPP queue has no nack (so no delay, no reject either): send nothing, so the
    // client's retry (or the queue) decides; our Sender retries after its backoff.
    if (!job.ppx) return
    s.flush()
    const info: NackInfo = { error }
    if (reject) info.reject = true
    else if (delay !== undefined) info.delay = delay
    s.writer?.write(encodeNack(envelopeOf(job), info))
    s.liveness.sent()
  }
}

/** True for a value `await` would wait on: an object or function with a `then` method. */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  )
}
