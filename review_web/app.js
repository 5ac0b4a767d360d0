// The review page: photos from the review API, decided by keyboard (or touch), one by one or as a grid (grid.js).
// config.json says where the API is and how to sign in: {"mode": "cloud", "apiBase", "cognito": {...}} when
// deployed, {"mode": "local", "apiBase": "", "note"} from `python -m review_api.local`.
//
// Work is claimed: the API leases each photo it hands out to this reviewer (others do not get it) until it is
// decided, given back, or the lease ends. A decision refused (409: someone else decided it, or holds it) moves on;
// only a lead's deliberate Override replaces another reviewer's decision.
import { ApiError, api, configureApi } from "./api.js";
import { signOut } from "./auth.js";
import { Grid } from "./grid.js";
import { decisionKey, showKeyLabels } from "./keys.js";
import { Picker } from "./labels.js";
import { exportManifest, renderHistory, restorePlace, savePlace as keepPlace } from "./records.js";

const BATCH = 5; // photos claimed at a time in the single view; the next batch is claimed before they run out
const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  me: null,
  labels: [],
  view: "single",
  queue: [], // claimed photos (decided ones stay, marked)
  index: 0,
  cursor: null,
  exhausted: false,
  loading: null, // the claim in flight
  remaining: null, // {count, exact} for the current filter
  heldByOthers: 0,
  filter: {},
  history: [], // decisions this session, newest last: {id, token, wasOpen}
  loaded: false, // the current photo has loaded
  overriding: false, // a lead pressed Override for the current photo
  busy: false,
  jumps: 0, // counts undos: an advance still claiming photos does not move away from the photo an undo showed
};

const savePlace = () => keepPlace(state);

// -- messages and counts -----------------------------------------------------------------------------------------

function say(text, kind = "info") {
  const message = $("message");
  message.textContent = text;
  message.className = `message ${kind}`;
}

function showRemaining() {
  const remaining = state.remaining;
  $("left").textContent = remaining ? `${remaining.count}${remaining.exact ? "" : "+"} left` : "";
  $("left").title = remaining && !remaining.exact ? "at least this many: counting stopped at its time limit" : "";
}

function emptyText() {
  const held = state.heldByOthers;
  if (held > 0) {
    const minutes = Math.round((state.me.lease_seconds || 300) / 60);
    return `Nothing left for you right now: ${held} photo(s) are held by other reviewers (they come back if not decided within ${minutes} min).`;
  }
  return "Nothing left to review for this filter.";
}

function claimed(page) {
  if (page.remaining) state.remaining = { ...page.remaining };
  state.heldByOthers = page.held_by_others || 0;
  showRemaining();
}

// -- the single view's queue ---------------------------------------------------------------------------------------

const current = () => state.queue[state.index] || null;
const mine = (photo) => !photo.decision || photo.reviewed_by_sub === state.me.sub;

async function claimMore({ fresh = false } = {}) {
  // Claim the next photos (a sparse filter reads on: empty pages with a cursor are not the end).
  if (state.loading) return state.loading;
  state.loading = (async () => {
    let cursor = fresh ? null : state.cursor;
    let added = 0;
    for (;;) {
      const page = await api("/api/claims", { method: "POST", body: { ...state.filter, limit: BATCH, ...(cursor ? { cursor } : {}) } });
      if (!cursor || page.remaining) claimed(page);
      else state.heldByOthers = page.held_by_others || state.heldByOthers;
      const known = new Set(state.queue.map((photo) => photo.id));
      const fresher = page.photos.filter((photo) => !known.has(photo.id));
      state.queue.push(...fresher);
      added += fresher.length;
      cursor = page.cursor;
      if (added || !cursor) break;
      say(`Searching… ${page.examined} photos checked`);
    }
    state.cursor = cursor;
    state.exhausted = !cursor && !added;
    return added;
  })();
  try {
    return await state.loading;
  } finally {
    state.loading = null;
  }
}

async function releaseUndecided() {
  const ids = state.queue.filter((photo) => !photo.decision && photo.lease && photo.lease.mine).map((p) => p.id);
  if (ids.length) await api("/api/claims/release", { method: "POST", body: { ids }, keepalive: true }).catch(() => {});
}

async function loadQueue() {
  await releaseUndecided();
  Object.assign(state, { queue: [], index: 0, cursor: null, exhausted: false });
  grid.reset();
  if (state.view === "grid") return grid.show();
  await claimMore({ fresh: true });
  render();
}

async function advance() {
  // The next photo without a decision; claim more when the claimed ones are all decided.
  const jumps = state.jumps;
  for (;;) {
    if (state.jumps !== jumps) return;
    const next = state.queue.findIndex((photo, i) => i > state.index && !photo.decision && !photo.conflict);
    if (next >= 0) {
      state.index = next;
      render();
      const left = state.queue.filter((photo, i) => i > next && !photo.decision).length;
      if (left < 2 && (state.cursor || !state.exhausted)) claimMore().catch(() => {}); // prefetch
      return;
    }
    const added = await claimMore();
    if (!added && !state.cursor) {
      // The end: one fresh pass from the start picks up photos given back or whose lease ended.
      if (!(await claimMore({ fresh: true }))) break;
    }
  }
  if (state.jumps !== jumps) return;
  // Photos skipped with Next are still this reviewer's, and still counted in "N left": go back to them.
  const skipped = state.queue.findIndex((photo) => !photo.decision && !photo.conflict);
  if (skipped >= 0) {
    state.index = skipped;
    say("Back to the photos you skipped.");
    return render();
  }
  state.index = state.queue.length; // past the end: "nothing left"
  render();
}

async function move(step) {
  const target = state.index + step;
  if (target < 0) return;
  if (target >= state.queue.length && !(await claimMore())) {
    state.index = state.queue.length;
    return render();
  }
  state.index = Math.min(target, state.queue.length);
  render();
}

// -- showing a photo ----------------------------------------------------------------------------------------------

function percent(value) {
  return value === null || value === undefined ? "no confidence" : `${Math.round(value * 1000) / 10}%`;
}

function verb(photo) {
  if (photo.decision === "reject") return "Rejected";
  return photo.decision === "confirm" ? `Confirmed ${photo.human_label}` : `Corrected to ${photo.human_label}`;
}

function render() {
  const photo = current();
  showRemaining();
  $("empty").hidden = Boolean(photo);
  $("empty").textContent = photo ? "" : emptyText();
  document.querySelector(".panel").classList.toggle("inactive", !photo);
  $("history").hidden = true;
  $("override").hidden = true;
  if (!photo) {
    $("photo").hidden = true;
    $("photo-problem").hidden = true;
    for (const id of ["position", "photo-name", "confidence-text", "details", "lease"]) $(id).textContent = "";
    $("model-label").textContent = "–";
    $("confidence-bar").style.width = "0";
    $("decided").hidden = true;
    return updateActions();
  }
  $("position").textContent = `${state.index + 1} of ${state.queue.length}${state.cursor ? "+" : ""}`;
  $("photo-name").textContent = photo.image_uri.split("/").slice(3).join("/");
  $("model-label").textContent = photo.label || "(no label)";
  $("confidence-text").textContent = percent(photo.confidence);
  $("confidence-bar").style.width = `${Math.round((photo.confidence || 0) * 100)}%`;
  $("confidence-bar").className = `bar ${photo.confidence >= 0.8 ? "high" : photo.confidence >= 0.5 ? "mid" : "low"}`;
  const details = [photo.hotel_id && `hotel ${photo.hotel_id}`, photo.classified_at && photo.classified_at.slice(0, 16).replace("T", " "), photo.status];
  $("details").textContent = details.filter(Boolean).join(" · ");
  const lease = photo.lease;
  $("lease").textContent = lease ? (lease.mine ? `Held for you until ${lease.until.slice(11, 16)} UTC` : `Held by ${lease.by} until ${lease.until.slice(11, 16)} UTC`) : "";
  if (photo.decision || photo.conflict) {
    $("decided").textContent = photo.decision ? `${verb(photo)} by ${photo.reviewed_by}` : `Not saved: ${photo.conflict}`;
    $("decided").className = `decided${mine(photo) ? "" : " other"}`;
    $("decided").hidden = false;
    $("history").hidden = !photo.decision;
    $("history").open = false;
    $("override").hidden = mine(photo) || !state.me.lead || state.overriding;
  } else {
    $("decided").hidden = true;
  }
  showImage(photo);
  updateActions();
  const next = state.queue.slice(state.index + 1).find((candidate) => !candidate.decision && candidate.photo_url);
  if (next) new Image().src = next.photo_url; // prefetch the next photo
}

function showImage(photo) {
  const image = $("photo");
  const problem = $("photo-problem");
  if (photo.photo_url) {
    problem.hidden = true;
    image.hidden = false;
    image.alt = `Photo ${photo.image_uri}`;
    if (image.dataset.id !== photo.id || image.getAttribute("src") !== photo.photo_url) {
      state.loaded = false;
      image.dataset.id = photo.id;
      image.dataset.retried = "";
      image.src = photo.photo_url;
    } else {
      state.loaded = image.complete && image.naturalWidth > 0;
    }
  } else {
    state.loaded = false;
    image.hidden = true;
    image.removeAttribute("src");
    image.dataset.id = "";
    problem.textContent = photo.photo_problem || "No photo to show.";
    problem.hidden = false;
  }
}

// Confirm (and a correction) only for a photo on screen; a decision on someone else's only after Override.
function updateActions() {
  const photo = current();
  const open = Boolean(photo) && !state.busy && (mine(photo) || state.overriding) && !photo.conflict;
  $("confirm").disabled = !(open && state.loaded);
  $("search").disabled = !(open && state.loaded);
  $("reject").disabled = !open;
  document.body.dataset.photoReady = String(Boolean(photo) && state.loaded);
}

function photoLoaded() {
  const photo = current();
  if (photo && $("photo").dataset.id === photo.id) {
    state.loaded = true;
    updateActions();
  }
}

// A photo that does not load: its URL expired (fetch a fresh one, once) or the labelled version is gone.
async function photoFailed() {
  const image = $("photo");
  const photo = current();
  if (!photo || image.dataset.id !== photo.id) return;
  if (image.dataset.retried) {
    Object.assign(photo, { photo_url: null, photo_problem: "The photo could not be loaded: reject it or skip it." });
    return render();
  }
  image.dataset.retried = "yes";
  const failedUrl = photo.photo_url;
  try {
    Object.assign(photo, await api(`/api/photos/${photo.id}`));
    // The same URL again (signed within the same second) would fail the same way without a new error event.
    if (photo.photo_url === failedUrl) Object.assign(photo, { photo_url: null, photo_problem: "The photo could not be loaded: reject it or skip it." });
  } catch (error) {
    Object.assign(photo, { photo_url: null, photo_problem: error.message });
  }
  render();
}

async function showHistory() {
  const photo = current();
  if (photo && $("history").open) await renderHistory(photo.id, $("history-list"));
}

// -- deciding ----------------------------------------------------------------------------------------------------

function decided(photo, token, wasOpen) {
  state.history.push({ id: photo.id, token, wasOpen });
  if (wasOpen && state.remaining) state.remaining.count = Math.max(0, state.remaining.count - 1);
  savePlace();
  showRemaining();
}

async function decide(decision, label) {
  const photo = current();
  if (!photo || state.busy) return;
  if (decision !== "reject" && !state.loaded) return say("The photo has not loaded yet: look first, then decide.", "error");
  if (!mine(photo) && !state.overriding) {
    return say(state.me.lead ? "Decided by someone else: press Override first to replace it." : `Decided by ${photo.reviewed_by}: only a lead may change it.`, "error");
  }
  if (decision === "correct" && label === photo.label && !photo.decision) decision = "confirm";
  const body = { decision, token: photo.token };
  if (decision === "correct") body.label = label;
  if (state.overriding) body.override = true;
  state.busy = true;
  updateActions();
  let moveOn = false;
  try {
    const wasOpen = !photo.decision;
    const updated = await api(`/api/photos/${photo.id}/decision`, { method: "POST", body });
    Object.assign(photo, updated);
    decided(photo, updated.token, wasOpen);
    say(`${verb(updated)}.`, "ok");
    moveOn = true;
  } catch (error) {
    if (error.status === 409) {
      // Someone else decided it or holds it: show what they did and move on; nothing here replays the decision.
      if (error.body && error.body.current) Object.assign(photo, error.body.current);
      photo.conflict = error.message;
      moveOn = true;
    }
    say(`Not saved: ${error.message}`, "error");
  } finally {
    picker.close();
    state.overriding = false;
    state.busy = false; // before moving on: an undo pressed right away is not lost
    updateActions();
  }
  if (moveOn) await advance();
}

async function undo() {
  if (state.busy) return;
  const last = state.history.pop();
  if (!last) return say("Nothing to undo.");
  savePlace();
  state.busy = true;
  try {
    const restored = await api(`/api/photos/${last.id}/undo`, { method: "POST", body: { token: last.token } });
    restored.conflict = null;
    let index = state.queue.findIndex((photo) => photo.id === last.id);
    if (index < 0) index = state.queue.push(restored) - 1;
    else Object.assign(state.queue[index], restored);
    if (last.wasOpen && state.remaining) state.remaining.count += 1;
    grid.restored(restored);
    if (state.view === "single") {
      state.index = index;
      state.jumps += 1;
      render();
    } else {
      showRemaining();
    }
    say("Undone: the photo is back as it was before your decision.", "ok");
    grid.say("Undone.", "ok");
  } catch (error) {
    say(`Undo failed: ${error.message}`, "error");
    grid.say(`Undo failed: ${error.message}`, "error");
  } finally {
    state.busy = false;
    updateActions();
  }
}

// -- keyboard ----------------------------------------------------------------------------------------------------

function onKey(event) {
  const target = event.target;
  if (target.closest && target.closest("#filters")) {
    if (event.key === "Escape") target.blur();
    return;
  }
  if (state.view === "grid") return grid.onKey(event);
  if (target === $("search")) return picker.onKey(event);
  const action = decisionKey(event);
  if (action) {
    event.preventDefault();
    if (action === "confirm") return decide("confirm");
    if (action === "reject") return decide("reject");
    if (action === "undo") return undo();
    return; // a held key: ignored
  }
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
  if (moves[event.key]) {
    event.preventDefault();
    return move(moves[event.key]);
  }
  if (event.key.length === 1 && event.key.trim() && current() && !$("search").disabled) {
    event.preventDefault(); // typing anywhere starts a label search with that character
    picker.start(event.key);
  }
}

// -- views, filters, export ----------------------------------------------------------------------------------------

async function setView(view) {
  if (view === state.view) return;
  await releaseUndecided();
  state.view = view;
  savePlace();
  $("single").hidden = view !== "single";
  $("grid").hidden = view !== "grid";
  $("view-single").setAttribute("aria-pressed", String(view === "single"));
  $("view-grid").setAttribute("aria-pressed", String(view === "grid"));
  for (const element of document.querySelectorAll("[data-view]")) element.hidden = element.dataset.view !== view;
  document.activeElement.blur();
  await loadQueue();
}

function readFilters() {
  const form = new FormData($("filters"));
  state.filter = Object.fromEntries([...form.entries()].map(([name, value]) => [name, String(value).trim()]).filter(([, value]) => value));
}

// -- start -------------------------------------------------------------------------------------------------------

const picker = new Picker($("search"), $("suggestions"), {
  labels: () => state.labels,
  choose: (label) => decide("correct", label),
  say,
});

const grid = new Grid({
  labels: () => state.labels,
  filter: () => state.filter,
  remaining: claimed,
  decided,
  undo,
  emptyText,
  get busy() { return state.busy; }, // prettier-ignore
  set busy(value) { state.busy = value; }, // prettier-ignore
});

async function start() {
  showKeyLabels();
  state.config = await (await fetch("config.json", { cache: "no-store" })).json();
  if (state.config.mode === "local") {
    $("mode").textContent = `LOCAL MODE · no sign-in${state.config.note ? ` · ${state.config.note}` : ""}`;
    $("mode").hidden = false;
  } else {
    $("sign-out").hidden = false;
    $("sign-out").addEventListener("click", () => signOut(state.config.cognito));
  }
  await configureApi(state.config);
  state.me = await api("/api/me");
  $("who").textContent = state.me.name;
  if (!state.me.may_review) throw new ApiError(403, { message: `${state.me.name} is in no review group: ask an administrator to add you to reviewers` });
  $("export").hidden = !state.me.lead;
  const meta = await api("/api/labels");
  state.labels = meta.labels;
  for (const value of meta.statuses) $("f-status").add(new Option(value, value, value === "NEEDS_REVIEW", value === "NEEDS_REVIEW"));
  for (const label of state.labels) $("f-label").add(new Option(label, label));
  restorePlace(state, $("filters"));
  readFilters();

  $("filters").addEventListener("submit", async (event) => {
    event.preventDefault();
    readFilters();
    savePlace();
    document.activeElement.blur();
    try {
      await loadQueue();
      say("");
    } catch (error) {
      say(error.message, "error");
    }
  });
  $("confirm").addEventListener("click", () => decide("confirm"));
  $("reject").addEventListener("click", () => decide("reject"));
  $("undo").addEventListener("click", () => undo());
  $("prev").addEventListener("click", () => move(-1));
  $("next").addEventListener("click", () => move(1));
  $("override").addEventListener("click", () => {
    const photo = current();
    if (photo) photo.conflict = null;
    state.overriding = true;
    $("override").hidden = true;
    say("Override: your next decision replaces the one shown (it stays in the history).", "error");
    updateActions();
  });
  $("history").addEventListener("toggle", () => showHistory().catch((error) => say(error.message, "error")));
  $("view-single").addEventListener("click", () => setView("single"));
  $("view-grid").addEventListener("click", () => setView("grid"));
  $("export").addEventListener("click", () => exportManifest(say).catch((error) => say(`Export failed: ${error.message}`, "error")));
  $("photo").addEventListener("load", photoLoaded);
  $("photo").addEventListener("error", photoFailed);
  document.addEventListener("keydown", onKey);
  window.addEventListener("pagehide", () => {
    releaseUndecided();
  });
  const view = state.view;
  state.view = "single";
  if (view === "grid") await setView("grid");
  else await loadQueue();
  document.body.dataset.ready = "true";
}

start().catch((error) => {
  say(`The page could not start: ${error.message}`, "error");
  document.body.dataset.ready = "error";
});
