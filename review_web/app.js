// The review page: a queue of photos from the review API, decided by keyboard (or touch).
// config.json says where the API is and how to sign in: {"mode": "cloud", "apiBase", "cognito": {...}} when
// deployed, {"mode": "local", "apiBase": "", "note"} from `python -m review_api.local`.
import { accessToken, forgetToken, signOut } from "./auth.js";

const PAGE_SIZE = 25;
const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  token: null,
  labels: [],
  queue: [], // photos as the API returned them (decided ones stay, marked)
  index: 0,
  cursor: null,
  remaining: null, // {count, exact} for the current filter
  filter: {},
  history: [], // decisions this session, newest last: {id, token}
  suggestions: [],
  highlighted: 0,
  busy: false,
};

// -- the API ---------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(`${state.config.apiBase}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (response.status === 401 && state.config.mode === "cloud") {
    forgetToken();
    state.token = await accessToken(state.config.cognito);
    return api(path, { method, body });
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// -- loading the queue -----------------------------------------------------------------------------------------

function filterQuery(extra = {}) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const [name, value] of Object.entries({ ...state.filter, ...extra })) {
    if (value !== "" && value !== null && value !== undefined) query.set(name, value);
  }
  return query;
}

async function loadQueue() {
  state.queue = [];
  state.index = 0;
  state.cursor = null;
  const page = await api(`/api/photos?${filterQuery()}`);
  state.queue = page.photos;
  state.cursor = page.cursor;
  state.remaining = page.remaining;
  render();
}

async function loadMore() {
  if (!state.cursor) return false;
  const page = await api(`/api/photos?${filterQuery({ cursor: state.cursor })}`);
  const known = new Set(state.queue.map((photo) => photo.id));
  state.queue.push(...page.photos.filter((photo) => !known.has(photo.id)));
  state.cursor = page.cursor;
  return page.photos.length > 0;
}

// -- showing a photo --------------------------------------------------------------------------------------------

const current = () => state.queue[state.index] || null;

function percent(value) {
  return value === null || value === undefined ? "no confidence" : `${Math.round(value * 1000) / 10}%`;
}

function render() {
  const photo = current();
  const remaining = state.remaining;
  $("left").textContent = remaining ? `${remaining.count}${remaining.exact ? "" : "+"} left` : "";
  $("empty").hidden = Boolean(photo);
  document.querySelector(".panel").classList.toggle("inactive", !photo);
  if (!photo) {
    $("photo").hidden = true;
    $("photo-problem").hidden = true;
    $("position").textContent = "";
    $("photo-name").textContent = "";
    $("model-label").textContent = "–";
    $("confidence-text").textContent = "";
    $("confidence-bar").style.width = "0";
    $("details").textContent = "";
    $("decided").hidden = true;
    return;
  }
  $("position").textContent = `${state.index + 1} of ${state.queue.length}${state.cursor ? "+" : ""}`;
  $("photo-name").textContent = photo.image_uri.split("/").slice(3).join("/");
  $("model-label").textContent = photo.label || "(no label)";
  $("confidence-text").textContent = percent(photo.confidence);
  $("confidence-bar").style.width = `${Math.round((photo.confidence || 0) * 100)}%`;
  $("confidence-bar").className = `bar ${photo.confidence >= 0.8 ? "high" : photo.confidence >= 0.5 ? "mid" : "low"}`;
  const details = [photo.hotel_id && `hotel ${photo.hotel_id}`, photo.classified_at && photo.classified_at.slice(0, 16).replace("T", " "), photo.status];
  $("details").textContent = details.filter(Boolean).join(" · ");
  if (photo.decision) {
    const what = photo.decision === "reject" ? "Rejected" : photo.decision === "confirm" ? `Confirmed ${photo.human_label}` : `Corrected to ${photo.human_label}`;
    $("decided").textContent = `${what} by ${photo.reviewed_by}`;
    $("decided").hidden = false;
  } else {
    $("decided").hidden = true;
  }
  showImage(photo);
}

function showImage(photo) {
  const image = $("photo");
  const problem = $("photo-problem");
  if (photo.photo_url) {
    problem.hidden = true;
    image.hidden = false;
    image.alt = `Photo ${photo.image_uri}`;
    if (image.dataset.id !== photo.id || image.getAttribute("src") !== photo.photo_url) {
      image.dataset.id = photo.id;
      image.dataset.retried = "";
      image.src = photo.photo_url;
    }
  } else {
    image.hidden = true;
    image.removeAttribute("src");
    image.dataset.id = "";
    problem.textContent = photo.photo_problem || "No photo to show.";
    problem.hidden = false;
  }
}

// A photo that does not load: its URL expired (fetch a fresh one, once) or the labelled version is gone.
async function photoFailed() {
  const image = $("photo");
  const photo = current();
  if (!photo || image.dataset.id !== photo.id) return;
  if (image.dataset.retried) {
    Object.assign(photo, { photo_url: null, photo_problem: "The photo could not be loaded." });
    return render();
  }
  image.dataset.retried = "yes";
  try {
    Object.assign(photo, await api(`/api/photos/${photo.id}`));
  } catch (error) {
    Object.assign(photo, { photo_url: null, photo_problem: error.message });
  }
  render();
}

// -- deciding ----------------------------------------------------------------------------------------------------

function say(text, kind = "info") {
  const message = $("message");
  message.textContent = text;
  message.className = `message ${kind}`;
}

async function decide(decision, label) {
  const photo = current();
  if (!photo || state.busy) return;
  if (decision === "correct" && label === photo.label && !photo.decision) decision = "confirm";
  const body = { decision, token: photo.token };
  if (decision === "correct") body.label = label;
  state.busy = true;
  try {
    const wasOpen = !photo.decision;
    const updated = await api(`/api/photos/${photo.id}/decision`, { method: "POST", body });
    Object.assign(photo, updated);
    state.history.push({ id: photo.id, token: updated.token, wasOpen });
    if (wasOpen && state.remaining) state.remaining.count = Math.max(0, state.remaining.count - 1);
    const verb = decision === "reject" ? "Rejected" : decision === "confirm" ? `Confirmed ${updated.human_label}` : `Corrected to ${updated.human_label}`;
    say(`${verb}.`, "ok");
    closeSearch();
    await advance();
  } catch (error) {
    if (error.status === 409 && error.body && error.body.current) {
      Object.assign(photo, error.body.current);
      render();
    }
    say(`Not saved: ${error.message}`, "error");
  } finally {
    state.busy = false;
  }
}

async function advance() {
  // The next photo without a decision; load the next page when the loaded ones are all decided.
  for (;;) {
    const next = state.queue.findIndex((photo, i) => i > state.index && !photo.decision);
    if (next >= 0) {
      state.index = next;
      return render();
    }
    if (!(await loadMore())) break;
  }
  state.index = state.queue.length; // past the end: "nothing left"
  render();
}

async function undo() {
  const last = state.history.pop();
  if (!last || state.busy) {
    if (!last) say("Nothing to undo.");
    return;
  }
  state.busy = true;
  try {
    const restored = await api(`/api/photos/${last.id}/undo`, { method: "POST", body: { token: last.token } });
    let index = state.queue.findIndex((photo) => photo.id === last.id);
    if (index < 0) index = state.queue.push(restored) - 1;
    else Object.assign(state.queue[index], restored);
    state.index = index;
    if (last.wasOpen && state.remaining) state.remaining.count += 1;
    say("Undone: the photo is back in the queue.", "ok");
    render();
  } catch (error) {
    say(`Undo failed: ${error.message}`, "error");
  } finally {
    state.busy = false;
  }
}

async function move(step) {
  const target = state.index + step;
  if (target < 0) return;
  if (target >= state.queue.length && !(await loadMore())) {
    state.index = state.queue.length;
    return render();
  }
  state.index = Math.min(target, state.queue.length);
  render();
}

// -- label search (type-ahead over every taxonomy label) ----------------------------------------------------------

function matches(text) {
  const needle = text.trim().toLowerCase();
  if (!needle) return [];
  const starts = state.labels.filter((label) => label.toLowerCase().startsWith(needle));
  const words = state.labels.filter((label) => !starts.includes(label) && label.toLowerCase().split(/[\s/]+/).some((word) => word.startsWith(needle)));
  const anywhere = state.labels.filter((label) => !starts.includes(label) && !words.includes(label) && label.toLowerCase().includes(needle));
  return [...starts, ...words, ...anywhere];
}

function renderSuggestions() {
  const list = $("suggestions");
  list.replaceChildren();
  state.suggestions.forEach((label, i) => {
    const item = document.createElement("li");
    item.textContent = label;
    item.role = "option";
    item.id = `suggestion-${i}`;
    item.setAttribute("aria-selected", String(i === state.highlighted));
    item.addEventListener("mousedown", (event) => {
      event.preventDefault();
      decide("correct", label);
    });
    list.append(item);
  });
  list.hidden = state.suggestions.length === 0;
  $("search").setAttribute("aria-expanded", String(!list.hidden));
  if (!list.hidden) $("search").setAttribute("aria-activedescendant", `suggestion-${state.highlighted}`);
}

function updateSearch() {
  state.suggestions = matches($("search").value);
  state.highlighted = 0;
  renderSuggestions();
}

function closeSearch() {
  $("search").value = "";
  state.suggestions = [];
  renderSuggestions();
  $("search").blur();
}

function onSearchKey(event) {
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    if (!state.suggestions.length) return;
    const step = event.key === "ArrowDown" ? 1 : -1;
    state.highlighted = (state.highlighted + step + state.suggestions.length) % state.suggestions.length;
    renderSuggestions();
  } else if (event.key === "Enter") {
    event.preventDefault();
    const label = state.suggestions[state.highlighted];
    if (label) decide("correct", label);
    else say("No label matches; keep typing or press Esc.", "error");
  } else if (event.key === "Escape") {
    event.preventDefault();
    closeSearch();
  } else if (event.key === "Backspace" && !$("search").value) {
    event.preventDefault();
    closeSearch();
  }
}

// -- keyboard ----------------------------------------------------------------------------------------------------

function onKey(event) {
  const target = event.target;
  if (target === $("search")) return onSearchKey(event);
  if (target.closest && target.closest("#filters")) {
    if (event.key === "Escape") target.blur();
    return;
  }
  if (event.altKey) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    return undo();
  }
  if (event.ctrlKey || event.metaKey) return;
  const actions = {
    Enter: () => decide("confirm"),
    Delete: () => decide("reject"),
    Backspace: () => undo(),
    ArrowRight: () => move(1),
    ArrowDown: () => move(1),
    ArrowLeft: () => move(-1),
    ArrowUp: () => move(-1),
  };
  if (actions[event.key]) {
    event.preventDefault();
    return actions[event.key]();
  }
  if (event.key.length === 1 && event.key.trim() && current()) {
    // Typing anywhere starts a label search with that character.
    event.preventDefault();
    $("search").focus();
    $("search").value = event.key;
    updateSearch();
  }
}

// -- start -------------------------------------------------------------------------------------------------------

function fillFilters(statuses) {
  const status = $("f-status");
  for (const value of statuses) status.add(new Option(value, value, value === "NEEDS_REVIEW", value === "NEEDS_REVIEW"));
  for (const label of state.labels) $("f-label").add(new Option(label, label));
}

function readFilters() {
  const form = new FormData($("filters"));
  state.filter = Object.fromEntries([...form.entries()].map(([name, value]) => [name, String(value).trim()]));
}

async function start() {
  state.config = await (await fetch("config.json", { cache: "no-store" })).json();
  if (state.config.mode === "local") {
    $("mode").textContent = `LOCAL MODE · no sign-in${state.config.note ? ` · ${state.config.note}` : ""}`;
    $("mode").hidden = false;
  } else {
    state.token = await accessToken(state.config.cognito);
    $("sign-out").hidden = false;
    $("sign-out").addEventListener("click", () => signOut(state.config.cognito));
  }
  const [me, meta] = await Promise.all([api("/api/me"), api("/api/labels")]);
  $("who").textContent = me.name;
  state.labels = meta.labels;
  fillFilters(meta.statuses);
  readFilters();

  $("filters").addEventListener("submit", async (event) => {
    event.preventDefault();
    readFilters();
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
  $("search").addEventListener("input", updateSearch);
  $("photo").addEventListener("error", photoFailed);
  document.addEventListener("keydown", onKey);
  await loadQueue();
  document.body.dataset.ready = "true";
}

start().catch((error) => {
  say(`The page could not start: ${error.message}`, "error");
  document.body.dataset.ready = "error";
});
