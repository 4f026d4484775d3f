/**
 * keel-ws.js: the browser client of Keel's /ws (a plain ES module, no dependencies).
 *
 * It keeps one WebSocket open, reconnecting with exponential back-off and
 * jitter, and resubscribes every channel with `since` (the last offset and
 * epoch it saw), so the server replays what was missed — on any instance.
 * Each message reaches the page once and in order: one seen already is
 * dropped, and a gap in the offsets (the server's own link to Redis was cut
 * meanwhile) is filled by subscribing again with `since`. When the server
 * cannot replay (`recovered: false`: the history was lost or is too short),
 * or cannot know (no history), the channel's `reset` handler runs: reload
 * whatever the page shows from that channel.
 *
 *   import { KeelSocket } from "/static/keel-ws.js";
 *
 *   const socket = new KeelSocket("/ws", {
 *     onStatus: (status) => { banner.hidden = status === "open"; },
 *   });
 *   const stop = socket.subscribe("items", {
 *     message: (data, meta) => applyChange(data),   // meta: {channel, offset, epoch}
 *     reset: () => reloadItems(),                   // missed messages cannot be replayed
 *     error: (error) => console.warn(error.code),   // the server refused the subscription
 *   });
 *   await socket.publish("chat.lobby", { text: "hi" });   // resolves on the server's ok
 *   const here = await socket.presence("chat.lobby");     // subscribers on every instance
 *   stop();          // unsubscribe
 *   socket.close();  // for good
 *
 * `url`: a path ("/ws", resolved against the page: ws: or wss:), a full ws(s)://
 * URL, an array of them (tried in turn, one per connection attempt), or a
 * function returning one. Options: `minDelay` and `maxDelay` (ms) bound the
 * back-off; `pingInterval` (ms) is how often the socket proves it is alive
 * (a connection silent for two intervals is dropped and made again);
 * `onStatus(status)` hears "connecting", "open", "waiting" (to reconnect) and
 * "closed". Requests made while disconnected are rejected at once.
 */

const OPEN = 1;

export class KeelError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "KeelError";
    this.code = code;
  }
}

export class KeelSocket {
  constructor(url, options = {}) {
    this.urls = typeof url === "function" ? url : [].concat(url);
    this.minDelay = options.minDelay ?? 250;
    this.maxDelay = options.maxDelay ?? 10000;
    this.pingInterval = options.pingInterval ?? 20000;
    this.onStatus = options.onStatus ?? (() => {});
    this.status = "connecting";
    // channel -> {handlers, position: {offset, epoch} | null, started, syncing}
    this.channels = new Map();
    this.pending = new Map(); // ref -> {resolve, reject, channel?}
    this.nextRef = 1;
    this.attempt = 0;
    this.connects = 0;
    this.closed = false;
    this.ws = null;
    this.timer = null;
    this.connect();
  }

  /** Receive `channel`'s messages; returns a function that unsubscribes. */
  subscribe(channel, handlers) {
    const entry = { handlers, position: null, started: false, syncing: false };
    this.channels.set(channel, entry);
    if (this.ws?.readyState === OPEN) this.sendSubscribe(channel, entry);
    return () => {
      if (this.channels.get(channel) !== entry) return;
      this.channels.delete(channel);
      if (this.ws?.readyState === OPEN) this.request({ op: "unsubscribe", channel }).catch(() => {});
    };
  }

  /** Publish `data` on `channel`; resolves on the server's ok, rejects with a KeelError. */
  publish(channel, data) {
    return this.request({ op: "publish", channel, data }).then(() => undefined);
  }

  /** The number of subscribers of `channel` on every instance. */
  presence(channel) {
    return this.request({ op: "presence", channel }).then((reply) => reply.subscribers);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws?.close(1000);
    this.setStatus("closed");
  }

  // --- the connection -----------------------------------------------------------------

  url() {
    const next = typeof this.urls === "function" ? this.urls() : this.urls[this.connects % this.urls.length];
    const resolved = new URL(next, window.location.href);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.href;
  }

  connect() {
    if (this.closed) return;
    this.setStatus("connecting");
    const ws = new WebSocket(this.url());
    this.connects += 1;
    this.ws = ws;
    let heard = Date.now();
    let pinger = null;
    ws.onopen = () => {
      this.attempt = 0;
      this.setStatus("open");
      for (const [channel, entry] of this.channels) this.sendSubscribe(channel, entry);
      pinger = setInterval(() => {
        if (Date.now() - heard > 2 * this.pingInterval) ws.close(4000, "no answer");
        else ws.send('{"op":"ping"}');
      }, this.pingInterval);
    };
    ws.onmessage = (event) => {
      heard = Date.now();
      this.receive(JSON.parse(event.data));
    };
    ws.onclose = () => {
      clearInterval(pinger);
      if (this.ws !== ws) return;
      this.ws = null;
      for (const waiter of this.pending.values()) waiter.reject(new KeelError("disconnected", "the connection closed"));
      this.pending.clear();
      this.reconnect();
    };
  }

  reconnect() {
    if (this.closed) return;
    const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    this.attempt += 1;
    this.setStatus("waiting");
    // Half fixed, half random: clients cut off together do not come back together.
    this.timer = setTimeout(() => this.connect(), ceiling / 2 + Math.random() * (ceiling / 2));
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.onStatus(status);
  }

  // --- frames ---------------------------------------------------------------------------

  request(frame) {
    if (this.ws?.readyState !== OPEN) {
      return Promise.reject(new KeelError("disconnected", "not connected; try again"));
    }
    const ref = this.nextRef++;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  sendSubscribe(channel, entry) {
    const frame = { op: "subscribe", channel };
    const resuming = entry.started; // it was subscribed before: something may be missing
    if (entry.position) frame.since = entry.position;
    entry.syncing = true;
    this.request(frame).then(
      (ok) => {
        if (this.channels.get(channel) !== entry) return;
        entry.syncing = false;
        if (ok.offset !== undefined) entry.position = { offset: ok.offset, epoch: ok.epoch };
        entry.started = true;
        // Not recovered, or not known to be: the page must reload what it shows.
        if (resuming && ok.recovered !== true) entry.handlers.reset?.();
      },
      (error) => {
        entry.syncing = false;
        if (error.code === "disconnected") return; // resubscribed on the next connection
        if (this.channels.get(channel) === entry) this.channels.delete(channel);
        entry.handlers.error?.(error);
      },
    );
  }

  receive(frame) {
    if (frame.op === "message") {
      const entry = this.channels.get(frame.channel);
      if (entry && this.inOrder(frame, entry)) {
        const meta = { channel: frame.channel, offset: frame.offset, epoch: frame.epoch };
        entry.handlers.message?.(frame.data, meta);
      }
      return;
    }
    const waiter = this.pending.get(frame.ref);
    if (!waiter) return;
    this.pending.delete(frame.ref);
    if (frame.op === "error") waiter.reject(new KeelError(frame.code, frame.message));
    else waiter.resolve(frame);
  }

  /** Is this message the next one of its channel? Drops repeats, asks again after gaps. */
  inOrder(frame, entry) {
    const last = entry.position;
    if (frame.offset === undefined) return true; // no history: nothing to check
    if (last && last.epoch === frame.epoch) {
      if (frame.offset <= last.offset) return false; // seen already
      if (frame.offset > last.offset + 1) {
        // Missed some: the server replays them after `last` (this one included).
        if (!entry.syncing && this.ws?.readyState === OPEN) this.sendSubscribe(frame.channel, entry);
        return false;
      }
    } else if (last && !entry.syncing) {
      entry.handlers.reset?.(); // a new epoch: the history was lost, and what it held
    }
    entry.position = { offset: frame.offset, epoch: frame.epoch };
    return true;
  }
}
