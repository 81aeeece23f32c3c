/**
 * WAL checkpoints off the event loop: a worker thread (its source inline below) copies the WAL
 * into the database on a connection of its own while the store keeps writing.
 */

/**
 * The WAL size from which the store completes a checkpoint on its own connection so that the WAL
 * starts over. Below the journal size limit, so the WAL file keeps its size and is rewritten in
 * place rather than grown again.
 */
export const WAL_RESET_BYTES = 32 * 1024 * 1024;

/**
 * Runs in a worker: checkpoints the WAL on a connection of its own, so the copy into the
 * database (and its fsync) never runs inside a COMMIT on the event loop. A PASSIVE checkpoint
 * takes no writer lock: the server keeps writing meanwhile, so under steady writes it never
 * reaches the WAL's end, and the WAL would only grow (measured: 150 MB and growing after a
 * minute of sets, every commit appending to new file space at 2–3× the cost of rewriting it).
 * So once the WAL has grown past WAL_RESET_BYTES, after the worker's checkpoint the store
 * finishes the job on its own connection between two transactions: a PASSIVE checkpoint of the
 * few frames written meanwhile. The whole WAL is then in the database and the next write
 * transaction starts the WAL over from its beginning. That last step (2–9 ms measured, two
 * fsyncs) stalls the event loop, so it is rare: about once a second under sets only.
 *
 * The connection is open only during a checkpoint, and the shared state word says when: the
 * store's close() waits for a checkpoint under way and then forbids new ones, so no connection
 * of the worker outlives the store (which would race with the removal of its files).
 */
const CHECKPOINT_WORKER_SOURCE = `
import { DatabaseSync } from "node:sqlite";
const IDLE = 0, BUSY = 1;
let settings;
let timer;
function checkpoint() {
  timer = undefined;
  if (Atomics.compareExchange(settings.state, 0, IDLE, BUSY) !== IDLE) return;
  let reply = { ok: true, walFrames: 0 };
  try {
    const db = new DatabaseSync(settings.path);
    try {
      db.exec("PRAGMA busy_timeout = " + Number(settings.busyTimeoutMs));
      const result = db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get();
      reply.walFrames = Number(result?.log ?? 0);
    } finally {
      db.close();
    }
  } catch (error) {
    reply = { ok: false, message: String(error?.message ?? error) };
  }
  Atomics.store(settings.state, 0, IDLE);
  Atomics.notify(settings.state, 0);
  self.postMessage(reply);
}
self.onmessage = (event) => {
  const message = event.data;
  if (message.type === "open") {
    settings = { ...message, state: new Int32Array(message.stateBuffer) };
  } else if (message.type === "dirty" && timer === undefined) {
    timer = setTimeout(checkpoint, settings.intervalMs);
  }
};
`;

const CHECKPOINT_IDLE = 0;
const CHECKPOINT_BUSY = 1;
const CHECKPOINT_CLOSED = 2;
/** close() waits at most this long for a checkpoint under way (it has a busy timeout too). */
const CHECKPOINT_CLOSE_WAIT_MS = 30_000;

/** The store's side of the checkpoint worker: one "dirty" notice per checkpoint, at most. */
export class CheckpointWorker {
  readonly #path: string;
  readonly #intervalMs: number;
  readonly #busyTimeoutMs: number;
  readonly #state = new Int32Array(new SharedArrayBuffer(4));
  #worker: Worker | undefined;
  #url: string | undefined;
  /** A checkpoint was asked for and has not run yet. */
  #requested = false;

  readonly #onCheckpointed: (walFrames: number) => void;

  /**
   * `onCheckpointed` runs on the event loop after each checkpoint the worker made, with the
   * number of frames the WAL held.
   */
  constructor(
    path: string,
    intervalMs: number,
    busyTimeoutMs: number,
    onCheckpointed: (walFrames: number) => void,
  ) {
    this.#path = path;
    this.#intervalMs = intervalMs;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#onCheckpointed = onCheckpointed;
  }

  /** Called after every write: asks for a checkpoint unless one is already due. */
  wrote(): void {
    if (this.#requested || Atomics.load(this.#state, 0) === CHECKPOINT_CLOSED) return;
    this.#requested = true;
    this.#start().postMessage({ type: "dirty" });
  }

  /** The worker, started on the first write: a store that is only read never needs one. */
  #start(): Worker {
    if (this.#worker) return this.#worker;
    this.#url = URL.createObjectURL(
      new Blob([CHECKPOINT_WORKER_SOURCE], { type: "text/javascript" }),
    );
    const worker = this.#worker = new Worker(this.#url, { type: "module" });
    worker.onmessage = (event: MessageEvent<{ ok: boolean; walFrames: number }>) => {
      // A failed checkpoint is retried after the next write; the backstop keeps the WAL bounded.
      this.#requested = false;
      if (event.data.ok) this.#onCheckpointed(event.data.walFrames);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      this.#requested = false;
    };
    worker.postMessage({
      type: "open",
      path: this.#path,
      intervalMs: this.#intervalMs,
      busyTimeoutMs: this.#busyTimeoutMs,
      stateBuffer: this.#state.buffer,
    });
    return worker;
  }

  /** Waits for a checkpoint under way, then stops the worker; none runs after this returns. */
  close(): void {
    const deadline = Date.now() + CHECKPOINT_CLOSE_WAIT_MS;
    while (
      Atomics.compareExchange(this.#state, 0, CHECKPOINT_IDLE, CHECKPOINT_CLOSED) ===
        CHECKPOINT_BUSY && Date.now() < deadline
    ) {
      Atomics.wait(this.#state, 0, CHECKPOINT_BUSY, 100);
    }
    Atomics.store(this.#state, 0, CHECKPOINT_CLOSED);
    this.#worker?.terminate();
    if (this.#url) URL.revokeObjectURL(this.#url);
  }
}
