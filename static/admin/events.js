// The live events pane: what happens to items and jobs, as it happens, on
// every instance. It reads the `items` and `jobs` channels of /ws through
// the browser client Keel ships (/static/keel-ws.js), which reconnects on its
// own and resumes each channel where it left off — on whichever instance
// answers — so a restart or a blip loses nothing. When a channel cannot be
// resumed (its history was lost: `recovered: false`), the pane says so
// instead of silently showing a gap.

import { KeelSocket } from "/static/keel-ws.js";
import { chip, h } from "./dom.js";
import * as fmt from "./format.js";

const CHANNELS = ["items", "jobs"];
const KEEP = 40; // entries shown, newest first
const STATUS_TEXT = {
  connecting: "connecting…",
  open: "live",
  waiting: "reconnecting…",
  closed: "closed",
};
const JOB_TONES = { succeeded: "ok", failed: "warn", dead: "bad" };

export class EventsPane {
  constructor(list, status) {
    this.list = list;
    this.status = status;
    this.socket = null;
  }

  /** Subscribe (once): the first state push says whether this instance serves /ws. */
  start() {
    if (this.socket) return;
    this.socket = new KeelSocket("/ws", { onStatus: (status) => this.#status(status) });
    for (const channel of CHANNELS) {
      this.socket.subscribe(channel, {
        message: (data, meta) => this.#add(channel, describe(channel, data), meta),
        reset: () => this.#note(channel, "history lost: earlier events cannot be shown"),
        error: (error) => this.#note(channel, `refused: ${error.message ?? error.code}`),
      });
    }
  }

  #status(status) {
    this.status.textContent = STATUS_TEXT[status] ?? status;
    this.status.dataset.state = status;
  }

  #add(channel, [text, tone], meta) {
    const offset = meta?.offset === undefined ? null : h("span", { class: "muted mono" }, `#${meta.offset}`);
    this.#prepend(channel, h("span", {}, tone ? chip(text.event, tone) : text.event, " ", text.subject), offset);
  }

  #note(channel, text) {
    this.#prepend(channel, h("span", { class: "muted" }, text), null);
  }

  #prepend(channel, body, offset) {
    const entry = h(
      "li",
      { dataset: { channel } },
      h("span", { class: "when mono" }, fmt.clock(Date.now() / 1000)),
      chip(channel, "info"),
      body,
      offset,
    );
    this.list.querySelector(".empty")?.remove();
    this.list.prepend(entry);
    while (this.list.children.length > KEEP) this.list.lastElementChild.remove();
  }
}

/** A message as a person reads it: [{event, subject}, tone]. */
export function describe(channel, data) {
  if (channel === "jobs") {
    const job = data?.job ?? {};
    return [{ event: data?.event ?? "?", subject: `${job.task ?? "job"} ${job.id ?? ""}` }, JOB_TONES[data?.event]];
  }
  const item = data?.item;
  if (item) return [{ event: data.event, subject: `${item.name} (${item.id}, v${item.version})` }, null];
  return [{ event: data?.event ?? "?", subject: data?.id ?? "" }, data?.event === "deleted" ? "warn" : null];
}
