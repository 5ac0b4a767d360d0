// Grid view: a page of photos the model gave one label, most confident first. The reviewer clicks (or moves to)
// the few that are wrong and corrects or rejects them; Enter confirms every other photo of the page in one request.
// A photo that did not load is never confirmed. The next page is claimed and its photos loaded in the background.
import { api } from "./api.js";
import { decisionKey } from "./keys.js";
import { Picker } from "./labels.js";

export const GRID_SIZE = 18; // 12–24 fit a laptop screen; 18 is 6 x 3

const $ = (id) => document.getElementById(id);

export class Grid {
  // app: { labels(), filter(), say(text, kind), decided(photo, token, wasOpen), remaining(page), undo(), busy }
  constructor(app) {
    this.app = app;
    this.page = null; // {photos, label, cursor}
    this.next = null; // promise of the prefetched page
    this.selected = -1;
    this.state = new Map(); // id -> "loading" | "loaded" | "failed"
    this.picker = new Picker($("grid-search"), $("grid-suggestions"), {
      labels: () => app.labels(),
      choose: (label) => this.correct(label),
      say: (text, kind) => this.say(text, kind),
    });
    $("grid-confirm").addEventListener("click", () => this.confirmRest());
  }

  say(text, kind = "info") {
    const message = $("grid-message");
    message.textContent = text;
    message.className = `message ${kind}`;
  }

  reset() {
    this.page = null;
    this.next = null;
    this.selected = -1;
  }

  async show() {
    if (!this.page) await this.load();
    else this.render();
  }

  // One grid page: the next page of the current label, or (none left) the first page of another label.
  async claim(continuing) {
    const filter = this.app.filter();
    const body = { ...filter, limit: GRID_SIZE, group: true };
    if (continuing && continuing.cursor) {
      body.cursor = continuing.cursor;
      body.label = filter.label || continuing.label;
    }
    for (;;) {
      const page = await api("/api/claims", { method: "POST", body });
      if (page.remaining) this.app.remaining(page);
      if (page.photos.length || !page.cursor) return { ...page, label: page.group_label };
      this.say(`Searching… ${page.examined} photos checked`);
      body.cursor = page.cursor; // a sparse filter: read on
      body.label = filter.label || page.group_label || body.label;
    }
  }

  async load() {
    const previous = this.page;
    let page = this.next ? await this.next.catch(() => null) : null;
    this.next = null;
    if (!page) page = await this.claim(previous && previous.cursor ? previous : null);
    // That label is read to its end: start again from the oldest photo, which picks the next label.
    if (!page.photos.length && previous) page = await this.claim(null);
    this.page = page;
    this.selected = -1;
    this.state = new Map(page.photos.map((photo) => [photo.id, photo.photo_url ? "loading" : "failed"]));
    this.render();
    this.say("");
    if (page.cursor) this.prefetch();
  }

  prefetch() {
    this.next = this.claim(this.page);
    this.next
      .then((page) => {
        for (const photo of page.photos) if (photo.photo_url) new Image().src = photo.photo_url;
      })
      .catch(() => {
        this.next = null;
      });
  }

  render() {
    const page = this.page;
    const tiles = $("tiles");
    tiles.replaceChildren();
    $("grid-empty").hidden = Boolean(page && page.photos.length);
    if (!page || !page.photos.length) {
      $("grid-empty").textContent = this.app.emptyText();
      $("grid-title").textContent = "";
      $("grid-lease").textContent = "";
      this.updateConfirm();
      return;
    }
    $("grid-title").textContent = `${page.label} · ${page.photos.length} photos, most confident first`;
    const until = page.photos.map((photo) => photo.lease && photo.lease.until).filter(Boolean).sort()[0];
    $("grid-lease").textContent = until ? `held for you until ${until.slice(11, 16)} UTC` : "";
    page.photos.forEach((photo, i) => tiles.append(this.tile(photo, i)));
    this.updateConfirm();
  }

  tile(photo, i) {
    const item = document.createElement("li");
    item.className = "tile";
    item.dataset.id = photo.id;
    item.classList.toggle("selected", i === this.selected);
    const image = document.createElement("img");
    image.alt = `Photo ${photo.image_uri}`;
    const state = this.state.get(photo.id);
    if (photo.photo_url) {
      image.addEventListener("load", () => this.loaded(photo, "loaded"));
      image.addEventListener("error", () => this.loaded(photo, "failed"));
      image.src = photo.photo_url;
    }
    const caption = document.createElement("div");
    caption.className = "tile-caption";
    const confidence = photo.confidence === null ? "–" : `${Math.round(photo.confidence * 100)}%`;
    caption.textContent = `${confidence} · ${photo.image_uri.split("/").pop()}`;
    const mark = document.createElement("div");
    mark.className = "tile-mark";
    if (photo.decision) {
      item.classList.add("decided", photo.decision);
      mark.textContent = photo.decision === "reject" ? "Rejected" : photo.decision === "confirm" ? "✓" : `→ ${photo.human_label}`;
    } else if (photo.conflict) {
      item.classList.add("conflict");
      mark.textContent = "Not saved";
      mark.title = photo.conflict;
    } else if (state === "failed") {
      item.classList.add("failed");
      mark.textContent = "Could not load: reject or leave it";
    }
    item.append(image, caption, mark);
    item.addEventListener("click", () => this.select(i === this.selected ? -1 : i));
    return item;
  }

  loaded(photo, state) {
    this.state.set(photo.id, state);
    if (state === "failed") this.render();
    else this.updateConfirm();
  }

  open() {
    return this.page ? this.page.photos.filter((photo) => !photo.decision && !photo.conflict) : [];
  }

  updateConfirm() {
    const open = this.open();
    const waiting = open.some((photo) => this.state.get(photo.id) === "loading");
    const ready = open.filter((photo) => this.state.get(photo.id) === "loaded");
    const button = $("grid-confirm");
    button.disabled = waiting || this.app.busy;
    button.firstChild.textContent = waiting
      ? "Loading photos… "
      : ready.length
        ? `Confirm the rest (${ready.length}) `
        : "Next page ";
    document.body.dataset.gridReady = String(!waiting);
  }

  select(i) {
    this.selected = i;
    for (const [position, element] of [...$("tiles").children].entries()) {
      element.classList.toggle("selected", position === i);
    }
    if (i >= 0) this.say(`Type the right label for ${this.page.photos[i].image_uri.split("/").pop()}, or reject it.`);
  }

  async decideOne(body) {
    const photo = this.page && this.page.photos[this.selected];
    if (!photo || photo.decision || this.app.busy) return;
    if (this.state.get(photo.id) !== "loaded" && body.decision !== "reject") {
      return this.say("That photo did not load: it can only be rejected or left.", "error");
    }
    this.app.busy = true;
    try {
      const updated = await api(`/api/photos/${photo.id}/decision`, { method: "POST", body: { ...body, token: photo.token } });
      Object.assign(photo, updated);
      this.app.decided(photo, updated.token, true);
      this.say(body.decision === "reject" ? "Rejected." : `Corrected to ${updated.human_label}.`, "ok");
    } catch (error) {
      photo.conflict = error.message;
      this.say(`Not saved: ${error.message}`, "error");
    } finally {
      this.app.busy = false;
      this.picker.close();
      this.selected = -1;
      this.render();
    }
  }

  correct(label) {
    return this.decideOne({ decision: "correct", label });
  }

  async confirmRest() {
    if (this.app.busy || $("grid-confirm").disabled) return;
    const ready = this.open().filter((photo) => this.state.get(photo.id) === "loaded");
    const failed = this.open().filter((photo) => this.state.get(photo.id) === "failed");
    this.app.busy = true;
    try {
      if (ready.length) {
        const result = await api("/api/decisions", {
          method: "POST",
          body: { decisions: ready.map((photo) => ({ id: photo.id, decision: "confirm", token: photo.token })) },
        });
        const byId = new Map(ready.map((photo) => [photo.id, photo]));
        for (const outcome of result.results) {
          const photo = byId.get(outcome.id);
          if (outcome.ok) {
            Object.assign(photo, outcome.photo);
            this.app.decided(photo, outcome.photo.token, true);
          } else {
            photo.conflict = outcome.message;
          }
        }
        const refused = result.results.length - result.saved;
        this.say(`Confirmed ${result.saved}${refused ? `; ${refused} not saved (someone else decided them)` : ""}.`, refused ? "error" : "ok");
      }
      if (failed.length) {
        await api("/api/claims/release", { method: "POST", body: { ids: failed.map((photo) => photo.id) } });
      }
    } catch (error) {
      this.say(`Not saved: ${error.message}`, "error");
      return;
    } finally {
      this.app.busy = false;
    }
    await this.load();
  }

  restored(photo) {
    const shown = this.page && this.page.photos.find((candidate) => candidate.id === photo.id);
    if (shown) {
      Object.assign(shown, photo);
      shown.conflict = null;
      this.render();
    }
  }

  move(step) {
    if (!this.page || !this.page.photos.length) return;
    const count = this.page.photos.length;
    this.select(this.selected < 0 ? (step > 0 ? 0 : count - 1) : (this.selected + step + count) % count);
  }

  onKey(event) {
    if (event.target === $("grid-search")) return this.picker.onKey(event);
    const action = decisionKey(event);
    if (action) {
      event.preventDefault();
      if (action === "confirm") return this.selected >= 0 ? this.say("Type a label for the selected photo, or press Esc.") : this.confirmRest();
      if (action === "reject") return this.decideOne({ decision: "reject" });
      if (action === "undo") return this.app.undo();
      return;
    }
    const steps = { ArrowRight: 1, ArrowDown: 6, ArrowLeft: -1, ArrowUp: -6 };
    if (steps[event.key]) {
      event.preventDefault();
      return this.move(steps[event.key]);
    }
    if (event.key === "Escape") return this.select(-1);
    if (event.key.length === 1 && event.key.trim() && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      if (this.selected < 0) return this.say("Click the photo that is wrong first (or move to it with the arrows).");
      this.picker.start(event.key);
    }
  }
}
